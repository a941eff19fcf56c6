"""registry pipeline: one node registers the selected runs, in configuration order."""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.registry.nodes import register_runs, selected_runs
from visprompt.pipelines.runs import bind_first, configured_runs, project_parameters


def create_pipeline(**kwargs) -> Pipeline:
    wanted = (project_parameters().get("registry") or {}).get("runs")
    runs = selected_runs(list(configured_runs()), wanted)
    if not runs:
        return Pipeline([])
    per_run = [f"{run}.{name}" for run in runs for name in ("artifact_dir", "train_summary")]
    return Pipeline(
        [
            node(
                bind_first(register_runs, runs),
                inputs=[
                    "shards",
                    "validation_summary",
                    "backbone_specs",
                    "params:training",
                    "params:registry",
                    *per_run,
                ],
                outputs="registry_summary",
                name="register_runs",
            )
        ]
    )
