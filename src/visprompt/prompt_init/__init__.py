"""Self-Prompt Tuning initialisation: VPT prompts built from the frozen backbone's own
tokens (k-means prototypes or cheap sampling), streamed in bounded memory. Torch only."""

from visprompt.prompt_init.build import build_prompt_inits
from visprompt.prompt_init.collect import STRATEGIES, InitConfig
from visprompt.prompt_init.io import load_metadata, load_prompts, save_prompt_init
from visprompt.prompt_init.kmeans import inertia
from visprompt.prompt_init.pooling import pool_windows
from visprompt.prompt_init.stream import ShardStream, TensorImages
from visprompt.prompt_init.tokens import layer_tokens

__all__ = [
    "STRATEGIES",
    "InitConfig",
    "ShardStream",
    "TensorImages",
    "build_prompt_inits",
    "inertia",
    "layer_tokens",
    "load_metadata",
    "load_prompts",
    "pool_windows",
    "save_prompt_init",
]
