"""Adaptation methods behind one API: `available`, `build`, `count_parameters`, `save`, `load`.

Each method is a package `methods/<name>/`: `config.py` (its options, a torch-free
`MethodConfig`) and `model.py` (the `AdaptedModel`, registered with `@register(Config)`).
Importing this package imports only the configs (every package here is a method), so a run
list is checked without torch; the model API (`build`, `load`, ...) loads on first use.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from visprompt.methods.config import MethodConfig, OptionError, parse_options

for _package in pkgutil.iter_modules(__path__):
    if _package.ispkg:  # each method's package: its config declares the method's name
        importlib.import_module(f"{__name__}.{_package.name}.config")
#: Every method: name -> its config class (the model registers itself in `<name>/model.py`).
CONFIGS = {c.method: c for c in sorted(MethodConfig.__subclasses__(), key=lambda c: c.method)}
_MODEL = {"AdaptedModel", "build", "count_parameters", "load", "method_class", "register", "save"}


def available() -> list[str]:
    """Names of every method."""
    return list(CONFIGS)


def config_class(name: str) -> type[MethodConfig]:
    """The config class of method `name`; an unknown name lists the valid ones."""
    if name not in CONFIGS:
        raise ValueError(f"unknown method '{name}'; available: {', '.join(available())}")
    return CONFIGS[name]


def __getattr__(name: str) -> Any:
    if name in _MODEL:  # the model side (torch), loaded on first use
        return getattr(importlib.import_module("visprompt.methods.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CONFIGS", "MethodConfig", "OptionError", "available", "config_class", "parse_options"]
