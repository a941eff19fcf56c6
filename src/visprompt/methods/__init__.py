"""Adaptation methods behind one API: `available`, `build`, `count_parameters`, `save`, `load`.

Each method lives in its own module and registers itself with `@register("name")`;
importing this package imports them all.
"""

from visprompt.methods import adavipro  # noqa: F401  (registers the method)
from visprompt.methods import ap  # noqa: F401  (registers the method)
from visprompt.methods import bias_tuning  # noqa: F401  (registers the method)
from visprompt.methods import full_finetune  # noqa: F401  (registers the method)
from visprompt.methods import linear_probe  # noqa: F401  (registers the method)
from visprompt.methods import lora  # noqa: F401  (registers the method)
from visprompt.methods import norm_tuning  # noqa: F401  (registers the method)
from visprompt.methods import pgn  # noqa: F401  (registers the method)
from visprompt.methods import vp  # noqa: F401  (registers the method)
from visprompt.methods import vpt  # noqa: F401  (registers the method)
from visprompt.methods.base import (
    AdaptedModel,
    available,
    build,
    count_parameters,
    load,
    method_class,
    register,
    save,
)

__all__ = [
    "AdaptedModel",
    "available",
    "build",
    "count_parameters",
    "load",
    "method_class",
    "register",
    "save",
]
