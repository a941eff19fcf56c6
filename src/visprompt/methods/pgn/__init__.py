"""PGN (`inversion`, the `pgn-invert` CLI): `config` is torch-free, `model` loads on use."""

from visprompt.methods.config import lazy_model

__getattr__ = lazy_model(__name__)
