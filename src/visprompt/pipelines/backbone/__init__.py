"""backbone pipeline: materialise each configured backbone's weights and record its spec."""

from visprompt.pipelines.backbone.pipeline import create_pipeline as create_pipeline
