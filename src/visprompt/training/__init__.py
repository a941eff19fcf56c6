"""Training library: `fit` a classifier with Lightning Fabric, `predict` with it.

No Kedro, no MLflow here: pipelines call these functions and log what they return.
"""

from visprompt.training.config import Preprocess, TrainConfig
from visprompt.training.loop import TrainResult, fit, predict
from visprompt.training.placement import Placement

__all__ = ["Placement", "Preprocess", "TrainConfig", "TrainResult", "fit", "predict"]
