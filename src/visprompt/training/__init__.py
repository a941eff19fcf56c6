"""Training library: `fit` a classifier with Lightning Fabric, `predict` with it.

No Kedro, no MLflow here: pipelines call these functions and log what they return.
`fit`, `predict`, `TrainResult` and `Placement` load Lightning on first use: checking a
run list (`training.runs`, when `kedro run` starts) needs only the configuration classes,
and importing Lightning took half of Kedro's start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from visprompt.training.config import Preprocess, TrainConfig

if TYPE_CHECKING:
    from visprompt.training.loop import TrainResult, fit
    from visprompt.training.passes import predict
    from visprompt.training.placement import Placement

__all__ = ["Placement", "Preprocess", "TrainConfig", "TrainResult", "fit", "predict"]

_LAZY = {"TrainResult": "loop", "fit": "loop", "predict": "passes", "Placement": "placement"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"visprompt.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'visprompt.training' has no attribute '{name}'")
