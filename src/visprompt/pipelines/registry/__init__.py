"""registry pipeline: register every trained run's prompt artifact and promote the best."""

from visprompt.pipelines.registry.pipeline import create_pipeline as create_pipeline
