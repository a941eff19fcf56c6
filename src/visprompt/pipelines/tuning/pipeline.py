"""tuning pipeline (`kedro run --pipelines tuning`, on demand: not in the default chain)."""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.runs import bind_first, configured_runs
from visprompt.pipelines.tuning.nodes import tune_runs
from visprompt.training.runs import RunSpec


def tuning_pipeline(runs: dict[str, RunSpec]) -> Pipeline:
    """One node over the validated runs; SPT runs start from their built prompts."""
    inputs = {
        "shards": "shards",
        "validation_summary": "validation_summary",
        "backbone_specs": "backbone_specs",
        "defaults": "params:training.defaults",
        "engine": "params:training_engine",
        "search": "params:tuning",
    }
    if any(spec.prompt_init for spec in runs.values()):
        inputs["prompt_inits"] = "prompt_inits"
    return Pipeline(
        [
            node(
                bind_first(tune_runs, runs),
                inputs=inputs,
                outputs=["tuning_trials", "tuned_hparams"],
                name="tune",
            )
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    return tuning_pipeline(configured_runs())
