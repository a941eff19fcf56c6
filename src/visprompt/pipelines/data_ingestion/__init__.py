"""data_ingestion: a configured source -> manifest, shards, ingestion report."""

from visprompt.pipelines.data_ingestion.pipeline import create_pipeline as create_pipeline
