"""tuning pipeline: equal-budget Optuna search per run on the validation split."""

from visprompt.pipelines.tuning.pipeline import create_pipeline as create_pipeline
