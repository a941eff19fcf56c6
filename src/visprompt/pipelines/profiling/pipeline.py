"""profiling pipeline: `efficiency` (CSV), `efficiency_markdown` and `efficiency_plots`."""

from kedro.pipeline import Node, Pipeline, node

from visprompt.pipelines import experiment
from visprompt.pipelines.profiling.nodes import efficiency_report, profile_runs
from visprompt.pipelines.runs import bind_first, configured_runs, project_parameters, seed_datasets

#: The experiment's efficiency reports (data/08_reporting/<experiment>/).
EFFICIENCY = ("efficiency", "efficiency_markdown", "efficiency_plots")


def create_pipeline(**kwargs) -> Pipeline:
    runs = {run: spec.seeds[0] for run, spec in configured_runs().items()}
    return profiling_pipeline(runs, experiment.name(project_parameters()))


def profile_node(runs: dict[str, int], output: str, name: str) -> Node:
    """A node measuring these training runs side by side, each on one seed's artifact
    ({run: seed}), next to their bare backbones; its table goes to `output`."""
    per_run = seed_datasets(runs.items(), "artifact_dir", "train_summary")
    return node(
        bind_first(profile_runs, list(runs)),
        inputs=["backbone_specs", "shards", "params:profiling", "params:training.defaults"]
        + per_run,
        outputs=output,
        name=name,
    )


def profiling_pipeline(runs: dict[str, int], name: str) -> Pipeline:
    """These runs profiled on one seed's artifact each ({run: seed}: costs do not depend on
    the seed), reported as experiment `name`."""
    return Pipeline(
        [
            profile_node(runs, "efficiency_profile", "profile_runs"),
            node(
                efficiency_report,
                inputs=["efficiency_profile", f"{name}.comparison", "shards"],
                outputs=[f"{name}.{out}" for out in EFFICIENCY],
                name="efficiency_report",
            ),
        ]
    )
