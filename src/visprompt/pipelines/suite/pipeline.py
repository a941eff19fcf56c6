"""suite pipeline (`kedro run --config pipelines/suite.yml`, on demand: not in the default
chain): one node gathering the tasks' tables into the suite experiment's reports, one
judging them across tasks (statistics, critical-difference diagram, claims)."""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines import experiment
from visprompt.pipelines.claims.nodes import report_suite
from visprompt.pipelines.runs import project_parameters
from visprompt.pipelines.suite.nodes import suite_tables


def create_pipeline(**kwargs) -> Pipeline:
    gather = node(
        suite_tables,
        inputs="params:suite",
        outputs=["suite_seeds", "tune_summary", "suite_status"],
        name="suite_tables",
    )
    judge = node(
        report_suite,
        inputs=["suite_seeds", "params:suite", "params:claims"],
        outputs=[
            "suite_per_task",
            "cross_task",
            "cross_task_markdown",
            "cd_diagram",
            "claims",
            "claims_markdown",
        ],
        name="report_suite",
    )
    name = experiment.name(project_parameters())
    return Pipeline([gather, judge], namespace=name, parameters={"params:suite", "params:claims"})
