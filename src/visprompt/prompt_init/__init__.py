"""Self-Prompt Tuning initialisation: prompts for VPT built from the frozen backbone's own
tokens (k-means prototypes or cheap sampling), streamed in bounded memory.

Torch library only (no kedro, no mlflow); the `prompt_init` pipeline wires it.
"""

from visprompt.prompt_init.build import PromptInit, build_prompt_inits, kmeans_capacity
from visprompt.prompt_init.collect import STRATEGIES, VARIANTS, InitCollector, InitConfig
from visprompt.prompt_init.io import load_metadata, load_prompts, save_prompt_init
from visprompt.prompt_init.kmeans import KMeansResult, inertia, kmeans, kmeans_plus_plus
from visprompt.prompt_init.pooling import pool_windows, window_size
from visprompt.prompt_init.reservoir import Reservoir
from visprompt.prompt_init.sampling import sample_prompts
from visprompt.prompt_init.stream import IndexedImages, ShardStream, TensorImages
from visprompt.prompt_init.tokens import layer_tokens

__all__ = [
    "STRATEGIES",
    "VARIANTS",
    "InitCollector",
    "IndexedImages",
    "InitConfig",
    "KMeansResult",
    "PromptInit",
    "Reservoir",
    "ShardStream",
    "TensorImages",
    "build_prompt_inits",
    "inertia",
    "kmeans",
    "kmeans_capacity",
    "kmeans_plus_plus",
    "layer_tokens",
    "load_metadata",
    "load_prompts",
    "pool_windows",
    "sample_prompts",
    "save_prompt_init",
    "window_size",
]
