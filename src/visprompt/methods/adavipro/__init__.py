"""AdaViPro: `config` is torch-free, `model` (torch) loads on first use."""

from visprompt.methods.config import lazy_model

__getattr__ = lazy_model(__name__)
