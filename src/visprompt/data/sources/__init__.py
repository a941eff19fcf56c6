"""Image sources, chosen by name: imagefolder, csv, torchvision, digits, synthetic.

Each source is a module with a `load(**options) -> SourceData`; modules are imported on
use, so a run over a folder of JPEGs does not pay for importing torchvision or sklearn.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from visprompt.data.sources.base import Record, SourceData

__all__ = ["Record", "SourceData", "available", "load_source"]

_MODULES = {
    "imagefolder": "imagefolder",
    "csv": "csv_manifest",
    "torchvision": "torchvision_datasets",
    "digits": "digits",
    "synthetic": "synthetic",
}


def available() -> list[str]:
    return sorted(_MODULES)


def load_source(kind: str, options: dict[str, Any] | None = None) -> SourceData:
    """Records of source `kind` configured by `options` (its keyword arguments)."""
    if kind not in _MODULES:
        raise ValueError(f"unknown data source '{kind}'; choose one of {available()}")
    load = importlib.import_module(f"{__name__}.{_MODULES[kind]}").load
    options = dict(options or {})
    valid = set(inspect.signature(load).parameters)
    unknown = set(options) - valid
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} for source '{kind}'; valid: {sorted(valid)}"
        )
    return load(**options)
