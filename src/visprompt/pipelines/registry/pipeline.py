"""registry pipeline: one node, in the experiment's namespace, registers the experiment's runs
(`experiment.runs`, then `registry.runs`) under its model, in configuration order (every
seed's artifact, summary and test metrics are inputs: the node picks each run's candidate
seed; its temperature and OOD detector, fitted on val by the evaluation, are served, and
every seed's test top-1 goes into the version's description)."""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines import experiment
from visprompt.pipelines.registry.nodes import register_runs
from visprompt.pipelines.runs import bind_first, configured_runs, project_parameters, seed_datasets


def create_pipeline(**kwargs) -> Pipeline:
    params = project_parameters()
    configured = configured_runs()
    chosen = set(experiment.layout(params, configured, "registry.runs"))
    layout = [pair for pair in experiment.layout(params, configured) if pair in chosen]
    if not layout:
        return Pipeline([])
    per_run = seed_datasets(layout, "artifact_dir", "train_summary", "test_metrics")
    target = {"model": experiment.registered_model(params), "layout": layout}
    shared = ["shards", "validation_summary", "backbone_specs", "params:training"]
    return Pipeline(
        [
            node(
                bind_first(register_runs, target),
                inputs=[*shared, "params:registry", *per_run],
                outputs="registry_summary",
                name="register_runs",
            )
        ],
        namespace=experiment.name(params),
        inputs={*shared[:3], *per_run},
        parameters={"params:training", "params:registry"},
    )
