"""tuning pipeline (`kedro run --pipelines tuning`, on demand: not in the default chain)."""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.runs import configured_runs
from visprompt.pipelines.tuning.nodes import tune_runs


def tuning_pipeline(prompt_inits: bool) -> Pipeline:
    """One node over the runs; with `prompt_inits`, SPT runs start from their built prompts."""
    inputs = {
        "shards": "shards",
        "validation_summary": "validation_summary",
        "backbone_specs": "backbone_specs",
        "training": "params:training",
        "engine": "params:training_engine",
        "search": "params:tuning",
    }
    if prompt_inits:
        inputs["prompt_inits"] = "prompt_inits"
    return Pipeline(
        [node(tune_runs, inputs=inputs, outputs=["tuning_trials", "tuned_hparams"], name="tune")]
    )


def create_pipeline(**kwargs) -> Pipeline:
    return tuning_pipeline(any(spec.prompt_init for spec in configured_runs().values()))
