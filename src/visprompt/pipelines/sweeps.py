"""Recipes with a run list of their own (`<section>.runs`, the format of `training.runs`).

The AdaViPro pad sweep and the AP layer sweep train and test their runs with the training
and evaluation pipelines' per-run pipelines, outside the default chain: each run's `run`
parameter is read from `<section>.runs.<name>` instead of `training.runs.<name>`. Their run
lists come from the session's parameters (Kedro's config loader, so `--params`, `--env` and
`--conf-source` apply), as `training.runs` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kedro.pipeline import Pipeline

from visprompt.pipelines.evaluation.pipeline import run_pipeline as evaluation_run
from visprompt.pipelines.runs import project_parameters
from visprompt.pipelines.training.pipeline import run_pipeline as training_run
from visprompt.training.runs import RunSpec, parse_run, parse_seeds


def recipe_runs(section: str, params: Mapping[str, Any] | None = None) -> dict[str, RunSpec]:
    """`<section>.runs`, each checked like a training run, in configuration order.

    A run without its own `seeds` trains `<section>.seeds` (seed 0 when that is not set).
    """
    block = (project_parameters() if params is None else params).get(section) or {}
    where = f"parameters_{section}.yml: {section}.seeds"
    seeds = parse_seeds(block.get("seeds", [0]), where)
    runs = block.get("runs") or {}
    return {name: parse_run(name, entry, seeds) for name, entry in runs.items()}


def trained_and_tested(section: str, specs: Iterable[RunSpec]) -> Pipeline:
    """Every run's training and evaluation pipelines, parameterised by `<section>.runs`."""
    pipeline = Pipeline([])
    for spec in specs:
        own = {f"params:training.runs.{spec.name}": f"params:{section}.runs.{spec.name}"}
        pipeline += Pipeline(training_run(spec), parameters=own)
        pipeline += evaluation_run(spec.name, spec.seeds)
    return pipeline
