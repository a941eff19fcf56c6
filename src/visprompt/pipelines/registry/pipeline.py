"""registry pipeline: one node registers the selected runs, in configuration order (every
seed's artifact and summary are inputs: the node picks each run's candidate seed)."""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.registry.nodes import register_runs, selected_runs
from visprompt.pipelines.runs import bind_first, configured_runs, project_parameters, seed_namespace


def create_pipeline(**kwargs) -> Pipeline:
    wanted = (project_parameters().get("registry") or {}).get("runs")
    configured = configured_runs()
    runs = selected_runs(list(configured), wanted)
    if not runs:
        return Pipeline([])
    layout = [(run, seed) for run in runs for seed in configured[run].seeds]
    per_run = [
        f"{seed_namespace(run, seed)}.{name}"
        for run, seed in layout
        for name in ("artifact_dir", "train_summary")
    ]
    return Pipeline(
        [
            node(
                bind_first(register_runs, layout),
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
