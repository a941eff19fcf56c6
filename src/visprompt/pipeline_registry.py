"""Project pipelines: every folder under pipelines/ is discovered; __default__ chains them."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# The order of the default chain (DESIGN.md); pipelines not yet present are skipped.
DEFAULT_CHAIN = (
    "data_ingestion",
    "data_validation",
    "backbone",
    "prompt_init",
    "training",
    "evaluation",
    "profiling",
    "registry",
    "claims",
)


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        (pipelines[name] for name in DEFAULT_CHAIN if name in pipelines), Pipeline([])
    )
    return pipelines
