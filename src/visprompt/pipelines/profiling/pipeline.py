"""profiling pipeline: `efficiency` (CSV), `efficiency_markdown` and `efficiency_plots`."""

from functools import partial

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.profiling.nodes import efficiency_report, profile_runs
from visprompt.pipelines.runs import configured_runs


def create_pipeline(**kwargs) -> Pipeline:
    return profiling_pipeline(list(configured_runs()))


def profiling_pipeline(runs: list[str]) -> Pipeline:
    """The pipeline for these training runs (their artifacts and summaries are inputs)."""
    profile = partial(profile_runs, runs)
    profile.__name__ = profile_runs.__name__  # kedro names and logs nodes by their function
    per_run = [f"{run}.{name}" for run in runs for name in ("artifact_dir", "train_summary")]
    return Pipeline(
        [
            node(
                profile,
                inputs=[
                    "backbone_specs",
                    "shards",
                    "params:profiling",
                    "params:training.defaults",
                    *per_run,
                ],
                outputs="efficiency_profile",
                name="profile_runs",
            ),
            node(
                efficiency_report,
                inputs=["efficiency_profile", "comparison"],
                outputs=["efficiency", "efficiency_markdown", "efficiency_plots"],
                name="efficiency_report",
            ),
        ]
    )
