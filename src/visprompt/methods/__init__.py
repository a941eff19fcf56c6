"""Adaptation methods behind one API: `available`, `build`, `count_parameters`, `save`, `load`.

Each method lives in its own module and registers itself with `@register("name")`;
importing this package imports them all.
"""

# Importing each method module registers it.
from visprompt.methods import (  # noqa: F401
    adavipro,
    ap,
    bias_tuning,
    full_finetune,
    linear_probe,
    lora,
    norm_tuning,
    pgn,
    vp,
    vpt,
)
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
from visprompt.methods.deploy import deployable

__all__ = [
    "AdaptedModel",
    "available",
    "build",
    "count_parameters",
    "deployable",
    "load",
    "method_class",
    "register",
    "save",
]
