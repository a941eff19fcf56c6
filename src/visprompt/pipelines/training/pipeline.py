"""training pipeline: the same one-node pipeline instantiated per run and seed.

Each seed of a run has the namespace `<run>.seed_<seed>` inside the run's namespace, so
`kedro run --pipelines training` trains every configured run and seed, `kedro run
--namespaces ap` trains (and, with the evaluation pipeline, evaluates) every seed of the
run named `ap`, and `--namespaces ap.seed_1` one seed.
"""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.runs import (
    RunSpec,
    bind_first,
    configured_runs,
    project_parameters,
    seed_namespace,
)
from visprompt.pipelines.training.nodes import train_run

#: Free inputs shared by every run (not prefixed with the run's namespace).
SHARED_INPUTS = {"shards", "validation_summary", "backbone_specs"}


def run_pipeline(spec: RunSpec, hparams: str = "config") -> Pipeline:
    """One run's pipeline: `<run>.seed_<s>.{artifact_dir,train_summary,history}` per seed.

    The node receives `spec` itself (validated once per `kedro run`), not its parameters.
    """
    inputs = {
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
    inputs["hparams"] = "params:training.hparams"
    if hparams == "tuned":  # the tuning pipeline's best values (tuned_hparams.json)
        inputs["tuned_hparams"] = "tuned_hparams"
        shared.add("tuned_hparams")
    return sum(
        (
            Pipeline(
                [
                    node(
                        bind_first(bind_first(train_run, spec), seed),
                        inputs=inputs,
                        outputs=["artifact_dir", "train_summary", "history"],
                        name="train",
                    )
                ],
                namespace=seed_namespace(spec.name, seed),
                inputs=shared,
                parameters=_params(inputs),
            )
            for seed in spec.seeds
        ),
        Pipeline([]),
    )


def _params(inputs: dict[str, str]) -> set[str]:
    return {v for v in inputs.values() if v.startswith("params:")}


def create_pipeline(**kwargs) -> Pipeline:
    hparams = (project_parameters().get("training") or {}).get("hparams", "config")
    return sum((run_pipeline(spec, hparams) for spec in configured_runs().values()), Pipeline([]))
