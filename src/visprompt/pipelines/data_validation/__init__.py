"""data_validation: the GX suite on the manifest; stops the run on bad data."""

from visprompt.pipelines.data_validation.pipeline import create_pipeline as create_pipeline
