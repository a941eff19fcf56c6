"""Recipes with a run list of their own (`<section>.runs`, the format of `training.runs`,
validated with it before anything runs), trained and tested by the per-run pipelines."""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Pipeline

from visprompt.pipelines.evaluation.pipeline import run_pipeline as evaluation_run
from visprompt.pipelines.runs import recipe_runs
from visprompt.pipelines.training.pipeline import run_pipeline as training_run
from visprompt.training.runs import RunSpec

__all__ = ["recipe_runs", "trained_and_tested"]


def trained_and_tested(specs: Iterable[RunSpec]) -> Pipeline:
    """Every run's training and evaluation pipelines (the nodes receive the parsed specs)."""
    pipeline = Pipeline([])
    for spec in specs:
        pipeline += training_run(spec)
        pipeline += evaluation_run(spec.name, spec.seeds)
    return pipeline
