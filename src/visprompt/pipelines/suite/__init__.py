"""suite pipeline: the suite's report from its tasks' workspaces (`python -m visprompt.suite`
runs the tasks, then `kedro run --config pipelines/suite.yml`, this pipeline)."""

from visprompt.pipelines.suite.pipeline import create_pipeline as create_pipeline
