"""prompt_init pipeline: `prompt_inits` from the training shards and a backbone spec."""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.prompt_init.nodes import build_prompt_inits


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                build_prompt_inits,
                inputs=[
                    "shards",
                    "validation_summary",
                    "backbone_specs",
                    "params:prompt_init",
                    "params:training.runs",
                    "params:training_engine",
                ],
                outputs="prompt_inits",
                name="build_prompt_inits",
            )
        ]
    )
