"""training pipeline: one modular pipeline per configured run, namespaced by the run name."""

from visprompt.pipelines.training.pipeline import create_pipeline as create_pipeline
