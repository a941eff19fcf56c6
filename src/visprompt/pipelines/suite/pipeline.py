"""suite pipeline (`kedro run --config pipelines/suite.yml`, on demand: not in the default
chain): one node gathering the tasks' tables into the suite experiment's reports."""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines import experiment
from visprompt.pipelines.runs import project_parameters
from visprompt.pipelines.suite.nodes import suite_tables


def create_pipeline(**kwargs) -> Pipeline:
    gather = node(
        suite_tables,
        inputs="params:suite",
        outputs=["suite_seeds", "tune_summary", "suite_status"],
        name="suite_tables",
    )
    name = experiment.name(project_parameters())
    return Pipeline([gather], namespace=name, parameters={"params:suite"})
