from kedro.pipeline import Pipeline, node, pipeline

from visprompt.pipelines.data_ingestion.nodes import ingest_images


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                ingest_images,
                inputs=["params:data_ingestion", "shards_staging", "params:backbone"],
                outputs=["staged_manifest", "ingestion_report"],
                name="ingest_images",
            )
        ]
    )
