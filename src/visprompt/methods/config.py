"""What every method config is: a typed, torch-free pydantic model of its build options.

A config is checked strictly (a quoted `"4"` is not an integer, unknown keys are refused),
so a run list is validated without importing torch, timm or peft. The model module of a
method imports torch; its package's `__init__` loads it on first use (`lazy_model`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

#: Method families, told apart in the comparison's plots.
Family = Literal["input-space prompts", "token prompts", "activation prompts", "baselines"]


class MethodConfig(BaseModel):
    """A method's build options with their types and defaults (dumped to `config.json`).

    Subclasses set `method` (the registered name) and `family`; `None` defaults that
    depend on the backbone (an image size, a width) are resolved by the model, which keeps
    the resolved copy so that the artifact rebuilds exactly.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    method: ClassVar[str] = ""
    family: ClassVar[Family] = "baselines"


class OptionError(ValueError):
    """A bad build option; the message names it and says what is wrong and what is valid."""


def parse_options(config: type[MethodConfig], options: Mapping[str, Any]) -> MethodConfig:
    """`config(**options)`; the first mistake raises `OptionError` in one sentence."""
    try:
        return config(**options)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        key, value = str(errors[0]["loc"][0]), errors[0]["input"]
        if errors[0]["type"] == "extra_forbidden":
            valid = ", ".join(config.model_fields) or "none (this method takes no options)"
            message = f"unknown option '{key}' for method {config.method}; valid: {valid}"
        else:
            wanted = [e["msg"].removeprefix("Input should be ") for e in errors if key in e["loc"]]
            message = (
                f"{config.method} option '{key}' is {value!r} ({type(value).__name__}); "
                f"should be {' or '.join(wanted)}"
            )
        raise OptionError(message) from None


def lazy_model(package: str) -> Callable[[str], Any]:
    """A package `__getattr__` that finds names in `<package>.model`, imported on first use,
    so that importing the package (for its config) does not import torch."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(importlib.import_module(f"{package}.model"), name)

    return __getattr__
