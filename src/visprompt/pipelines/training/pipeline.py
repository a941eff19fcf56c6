"""training pipeline: the same one-node pipeline instantiated per run under its namespace.

`kedro run --pipelines training` trains every configured run; `kedro run --namespaces ap`
trains (and, with the evaluation pipeline, evaluates) only the run named `ap`.
"""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.runs import RunSpec, bind_first, configured_runs
from visprompt.pipelines.training.nodes import train_run

#: Free inputs shared by every run (not prefixed with the run's namespace).
SHARED_INPUTS = {"shards", "validation_summary", "backbone_specs"}


def run_pipeline(spec: RunSpec) -> Pipeline:
    """One run's pipeline: outputs `<run>.artifact_dir`, `<run>.train_summary`, `<run>.history`."""
    inputs = {
        "run": f"params:training.runs.{spec.name}",
        "defaults": "params:training.defaults",
        "engine": "params:training_engine",
        "checkpoint_root": "params:training.checkpoint_root",
        "shards": "shards",
        "validation_summary": "validation_summary",
        "backbone_specs": "backbone_specs",
    }
    shared = set(SHARED_INPUTS)
    if spec.prompt_init is not None:
        inputs["prompt_inits"] = "prompt_inits"
        shared.add("prompt_inits")
    template = Pipeline(
        [
            node(
                bind_first(train_run, spec.name),
                inputs=inputs,
                outputs=["artifact_dir", "train_summary", "history"],
                name="train",
            )
        ]
    )
    return Pipeline(template, namespace=spec.name, inputs=shared, parameters=_params(inputs))


def _params(inputs: dict[str, str]) -> set[str]:
    return {v for v in inputs.values() if v.startswith("params:")}


def create_pipeline(**kwargs) -> Pipeline:
    return sum((run_pipeline(spec) for spec in configured_runs().values()), Pipeline([]))
