"""The suite: tasks x runs x seeds under the VTAB-1k protocol (docs/suite.md).

Each task is an experiment (`experiment.name` = the task) run by the project's own pipelines
in a workspace of its own (`workspace.py`: a Kedro project folder sharing the code and
configuration, with its own data/), so tasks can run in separate processes or machines;
`report.py` gathers the per-task tables into the suite's. No Kedro import here: the runner
starts `kedro run`, and the Kedro `suite` pipeline calls `report`.
"""
