"""claims pipeline: `claims` (CSV) and `claims_markdown` from the runs' result tables."""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.claims.nodes import report_claims


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                report_claims,
                inputs=["efficiency", "params:claims"],
                outputs=["claims", "claims_markdown"],
                name="report_claims",
            )
        ]
    )
