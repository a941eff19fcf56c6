"""Image sources by name, each a module with `load(**options) -> SourceData`, imported on use
(a folder of JPEGs does not pay for torchvision or sklearn); every source also takes `subset`.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from visprompt.data.sources.base import Record, SourceData
from visprompt.data.sources.subset import subset_from_options

__all__ = ["Record", "SourceData", "available", "load_source"]

_MODULES = {
    "imagefolder": "imagefolder",
    "csv": "csv_manifest",
    "torchvision": "torchvision_datasets",
    "idx": "idx",
    "digits": "digits",
    "synthetic": "synthetic",
    "mnist5k": "mnist5k",
    "animal_mnist": "animal_mnist",
    "vtab1k": "vtab1k",
}


def available() -> list[str]:
    return sorted(_MODULES)


def load_source(kind: str, options: dict[str, Any] | None = None) -> SourceData:
    """Records of source `kind` configured by `options` (its keyword arguments, and `subset`)."""
    if kind not in _MODULES:
        raise ValueError(f"unknown data source '{kind}'; choose one of {available()}")
    load = importlib.import_module(f"{__name__}.{_MODULES[kind]}").load
    options = dict(options or {})
    subset = options.pop("subset", None)
    valid = set(inspect.signature(load).parameters)
    unknown = set(options) - valid
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} for source '{kind}'; valid: "
            f"{sorted(valid | {'subset'})}"
        )
    return subset_from_options(load(**options), subset, f"sources.{kind}.subset")
