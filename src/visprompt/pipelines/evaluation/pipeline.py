"""evaluation pipeline: `<run>.test_metrics` per configured run (in the run's namespace),
then `comparison`, `comparison_markdown` and `comparison_plots` across runs."""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.evaluation.nodes import compare_runs, evaluate_run
from visprompt.pipelines.runs import bind_first, configured_runs


def run_pipeline(run: str) -> Pipeline:
    template = Pipeline(
        [
            node(
                evaluate_run,
                inputs=[
                    "artifact_dir",
                    "train_summary",
                    "backbone_specs",
                    "shards",
                    "params:evaluation",
                ],
                outputs="test_metrics",
                name="evaluate",
            )
        ]
    )
    return Pipeline(
        template,
        namespace=run,
        inputs={"backbone_specs", "shards"},
        parameters={"params:evaluation"},
    )


def create_pipeline(**kwargs) -> Pipeline:
    runs = list(configured_runs())
    if not runs:
        return Pipeline([])
    per_run = [
        f"{run}.{name}" for run in runs for name in ("train_summary", "test_metrics", "history")
    ]
    return sum((run_pipeline(run) for run in runs), Pipeline([])) + Pipeline(
        [
            node(
                bind_first(compare_runs, runs),
                inputs=["shards", *per_run],
                outputs=["comparison", "comparison_markdown", "comparison_plots"],
                name="compare_runs",
            )
        ]
    )
