"""claims pipeline: the experiment's `<name>.claims` (CSV) and `<name>.claims_markdown` from
its result tables (data/08_reporting/<name>/)."""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines import experiment
from visprompt.pipelines.claims.nodes import report_claims
from visprompt.pipelines.runs import bind_first, project_parameters


def create_pipeline(**kwargs) -> Pipeline:
    name = experiment.name(project_parameters())
    return Pipeline(
        [
            node(
                bind_first(report_claims, name),
                inputs=[f"{name}.efficiency", "params:claims"],
                outputs=[f"{name}.claims", f"{name}.claims_markdown"],
                name="report_claims",
            )
        ]
    )
