"""evaluation pipeline: `<run>.seed_<s>.test_metrics` per configured run and seed (in the
seed's namespace), then the experiment's comparison tables, significance and plots across
its runs (`experiment.runs`; `kedro run --namespaces a,b` compares a and b)."""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines import experiment
from visprompt.pipelines.evaluation.nodes import compare_runs, dvc_files, evaluate_run
from visprompt.pipelines.runs import (
    bind_first,
    configured_runs,
    project_parameters,
    seed_datasets,
    seed_namespace,
)


def run_pipeline(run: str, seeds: tuple[int, ...] = (0,)) -> Pipeline:
    """Every seed of `run`: `<run>.seed_<s>.test_metrics` from its artifact and summary."""
    inputs = ["artifact_dir", "train_summary", "backbone_specs", "shards", "params:evaluation"]
    evaluate = node(evaluate_run, inputs=inputs, outputs="test_metrics", name="evaluate")
    return sum(
        (
            Pipeline(
                [evaluate],
                namespace=seed_namespace(run, seed),
                inputs={"backbone_specs", "shards"},
                parameters={"params:evaluation"},
            )
            for seed in seeds
        ),
        Pipeline([]),
    )


def create_pipeline(**kwargs) -> Pipeline:
    params = project_parameters()
    runs = configured_runs()
    if not runs:
        return Pipeline([])
    layout = experiment.layout(params, runs)
    per_run = (run_pipeline(run, spec.seeds) for run, spec in runs.items())
    return sum(per_run, Pipeline([])) + report_pipeline(experiment.name(params), layout)


def report_pipeline(name: str, layout: list[tuple[str, int]]) -> Pipeline:
    """The experiment's comparison of the (run, seed) pairs of `layout`, in its namespace:
    `<name>.comparison` ... saved under data/08_reporting/<name>/."""
    per_seed = seed_datasets(layout, "train_summary", "test_metrics", "history")
    histories = seed_datasets(layout, "history")
    reports = Pipeline(
        [
            node(
                bind_first(compare_runs, layout),
                inputs=["shards", *per_seed],
                outputs=[
                    "comparison",
                    "comparison_seeds",
                    "significance",
                    "comparison_markdown",
                    "comparison_plots",
                    "run_plots",
                ],
                name="compare_runs",
            ),
            node(
                bind_first(dvc_files, layout),
                inputs=["comparison", *histories],
                outputs=["run_metrics", "training_curves"],
                name="dvc_files",
            ),
        ]
    )
    return Pipeline(reports, namespace=name, inputs={"shards", *per_seed})
