from kedro.pipeline import Pipeline, node, pipeline

from visprompt.pipelines.data_validation.nodes import require_valid, validate


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                validate,
                inputs=["staged_manifest", "shards_to_validate", "params:data_validation"],
                outputs=["validation_report", "validation_data_docs", "validation_result"],
                name="validate_manifest",
            ),
            node(
                require_valid,
                inputs=["validation_report", "validation_result"],
                outputs="validation_summary",
                name="require_valid_data",
            ),
        ]
    )
