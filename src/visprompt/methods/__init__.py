"""Adaptation methods behind one API: `available`, `build`, `count_parameters`, `save`, `load`.

Each method is a package `methods/<name>/`: `config.py` (its options, a torch-free
`MethodConfig`) and `model.py` (the `AdaptedModel`, registered with `@register(Config)`).
Importing this package imports only the configs, so a run list is checked without torch;
the model API (`build`, `load`, ...) loads `methods.base` on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from visprompt.methods.adavipro.config import AdaViProConfig
from visprompt.methods.ap.config import APConfig
from visprompt.methods.bias_tuning.config import BiasTuningConfig
from visprompt.methods.config import MethodConfig, OptionError, parse_options
from visprompt.methods.full_finetune.config import FullFinetuneConfig
from visprompt.methods.linear_probe.config import LinearProbeConfig
from visprompt.methods.lora.config import LoRAConfig
from visprompt.methods.norm_tuning.config import NormTuningConfig
from visprompt.methods.pgn.config import PGNConfig
from visprompt.methods.vp.config import VPConfig
from visprompt.methods.vpt.config import VPTConfig

#: Every method: name -> its config class (its model registers itself in `<name>/model.py`).
CONFIGS: dict[str, type[MethodConfig]] = {
    c.method: c
    for c in (
        AdaViProConfig,
        APConfig,
        BiasTuningConfig,
        FullFinetuneConfig,
        LinearProbeConfig,
        LoRAConfig,
        NormTuningConfig,
        PGNConfig,
        VPConfig,
        VPTConfig,
    )
}
_MODEL_API = (
    "AdaptedModel",
    "build",
    "count_parameters",
    "load",
    "method_class",
    "register",
    "save",
)


def available() -> list[str]:
    """Names of every method."""
    return sorted(CONFIGS)


def config_class(name: str) -> type[MethodConfig]:
    """The config class of method `name`; an unknown name lists the valid ones."""
    if name not in CONFIGS:
        raise ValueError(f"unknown method '{name}'; available: {', '.join(available())}")
    return CONFIGS[name]


def __getattr__(name: str) -> Any:
    if name in _MODEL_API:
        return getattr(importlib.import_module("visprompt.methods.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CONFIGS",
    "MethodConfig",
    "OptionError",
    "available",
    "config_class",
    "parse_options",
    *_MODEL_API,
]
