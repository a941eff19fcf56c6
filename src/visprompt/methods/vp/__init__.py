"""VP: a learned pixel prompt added to the normalised image, and its label mappings.

Options in `config` (torch-free); the model's names load from `model` on first use.
"""

from visprompt.methods.config import lazy_model

__getattr__ = lazy_model(__name__)
