"""backbone pipeline: `backbone_specs` from `params:backbone` (see parameters_backbone.yml)."""

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.backbone.nodes import build_backbones


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                build_backbones,
                inputs=["params:backbone", "params:training_engine"],
                outputs="backbone_specs",
                name="build_backbones",
            )
        ]
    )
