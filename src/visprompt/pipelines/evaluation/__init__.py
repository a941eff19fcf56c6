"""evaluation pipeline: test metrics per run, then the comparison table and plots."""

from visprompt.pipelines.evaluation.pipeline import create_pipeline as create_pipeline
