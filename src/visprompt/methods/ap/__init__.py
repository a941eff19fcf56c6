"""AP (activation prompts): one universal perturbation added to a chosen layer's output.

Options in `config` (torch-free); the model's names load from `model` on first use.
"""

from visprompt.methods.config import lazy_model

__getattr__ = lazy_model(__name__)
