"""training pipeline: one node per run and seed, in namespace `<run>.seed_<seed>`, so
`--namespaces ap` trains every seed of run `ap` and `--namespaces ap.seed_1` one seed.
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


def run_pipeline(spec: RunSpec, hparams: str = "config") -> Pipeline:
    """One run's `<run>.seed_<s>.{artifact_dir,train_summary,history}`; the node receives
    the validated `spec` itself, not its parameters."""
    inputs = {
        "defaults": "params:training.defaults",
        "engine": "params:training_engine",
        "checkpoint_root": "params:training.checkpoint_root",
        "shards": "shards",
        "validation_summary": "validation_summary",
        "backbone_specs": "backbone_specs",
    }
    if spec.prompt_init is not None:
        inputs["prompt_inits"] = "prompt_inits"
    inputs["hparams"] = "params:training.hparams"
    if hparams == "tuned":  # the tuning pipeline's best values (tuned_hparams.json)
        inputs["tuned_hparams"] = "tuned_hparams"
    params = {v for v in inputs.values() if v.startswith("params:")}
    shared = set(inputs.values()) - params  # free inputs, outside the seed's namespace
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
                parameters=params,
            )
            for seed in spec.seeds
        ),
        Pipeline([]),
    )


def create_pipeline(**kwargs) -> Pipeline:
    hparams = (project_parameters().get("training") or {}).get("hparams", "config")
    return sum((run_pipeline(spec, hparams) for spec in configured_runs().values()), Pipeline([]))
