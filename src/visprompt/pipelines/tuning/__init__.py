"""tuning pipeline: equal-budget Optuna search per run on the validation split."""

from visprompt.pipelines.tuning.pipeline import create_pipeline

__all__ = ["create_pipeline"]
