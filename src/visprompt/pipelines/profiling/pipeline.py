"""profiling pipeline: `efficiency` (CSV), `efficiency_markdown` and `efficiency_plots`."""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.profiling.nodes import efficiency_report, profile_runs
from visprompt.pipelines.runs import bind_first, configured_runs, seed_namespace


def create_pipeline(**kwargs) -> Pipeline:
    return profiling_pipeline({run: spec.seeds[0] for run, spec in configured_runs().items()})


def profiling_pipeline(runs: dict[str, int]) -> Pipeline:
    """The pipeline for these training runs, each profiled on one seed's artifact ({run: seed}).

    Costs do not depend on the seed (same architecture and shapes); the training time in the
    report is the mean over seeds, from the comparison table.
    """
    profile = bind_first(profile_runs, list(runs))
    per_run = [
        f"{seed_namespace(run, seed)}.{name}"
        for run, seed in runs.items()
        for name in ("artifact_dir", "train_summary")
    ]
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
                inputs=["efficiency_profile", "comparison", "shards"],
                outputs=["efficiency", "efficiency_markdown", "efficiency_plots"],
                name="efficiency_report",
            ),
        ]
    )
