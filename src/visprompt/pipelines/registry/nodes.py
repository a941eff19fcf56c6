"""Node of the registry pipeline: package (`registry.packaging`), register and maybe promote
(`registry.promotion`) each trained run."""

from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext
from typing import Any

from visprompt.data.shards import read_classes, read_split
from visprompt.evaluation.calibration import served_calibration
from visprompt.pipelines import tracking
from visprompt.registry.packaging import Candidate, candidate, git_commit
from visprompt.registry.promotion import (
    VerificationError,
    already_registered,
    champion_version,
    register_and_promote,
)

log = logging.getLogger(__name__)


def register_runs(
    target: dict[str, Any],
    shards: str,
    validation_summary: dict[str, Any],
    backbone_specs: dict[str, dict[str, Any]],
    training: dict[str, Any],
    params: dict[str, Any],
    *results: Any,
) -> dict[str, Any]:
    """Register each run's candidate seed under `target["model"]`, in order; the summary.

    `results` holds (artifact_dir, train_summary, test_metrics) per (run, seed) of
    `target["layout"]`; the test metrics' calibration goes into the version's package.
    Each new version is logged in its own nested MLflow run, its lineage as tags, its
    description (test top-1 included) set.
    """
    model_name, layout = str(target["model"]), target["layout"]
    if len(results) != 3 * len(layout):
        raise ValueError(f"expected 3 inputs per (run, seed) for {layout}, got {len(results)}")
    per_run: dict[str, dict[int, tuple[str, dict[str, Any]]]] = {}
    tests: dict[str, list[float]] = {}
    triples = zip(layout, results[0::3], results[1::3], results[2::3], strict=True)
    for (run, seed), artifact, summary, metrics in triples:
        served = {"calibration": served_calibration(metrics)}
        per_run.setdefault(run, {})[int(seed)] = (artifact, summary | served)
        tests.setdefault(run, []).append(float(metrics["top1"]))
    validation = (read_classes(shards), *read_split(shards, "val"))
    common = {
        "git_commit": git_commit(),
        "data_hash": str(validation_summary.get("data_hash", "unknown")),
        "kedro_run_id": tracking.kedro_run_id(),
    }
    decisions = []
    for run, seeds in per_run.items():
        found = candidate(
            run, seeds, backbone_specs, validation, params, training, common, tests[run]
        )
        decisions.append(_register(found, model_name, params, len(seeds)))
    return {
        "model_name": model_name,
        "metric": str(params["metric"]),
        "margin": float(params["margin"]),
        "decisions": decisions,
        "champion": champion_version(model_name),
    }


def _register(
    found: Candidate, model_name: str, params: dict[str, Any], n_seeds: int
) -> dict[str, Any]:
    """One run's decision; a version already registered logs nothing (no empty nested run)."""
    lineage = dict(found.lineage)
    unchanged = already_registered(model_name, found.artifact_dir, found.package, found.smoke)
    tags = {"visprompt.stage": "registry"}
    opened = nullcontext() if unchanged else tracking.nested_run(f"register_{found.run}", tags=tags)
    with opened as r:
        if r is not None:
            lineage["mlflow_run_id"] = r.info.run_id
        try:
            decision = register_and_promote(
                run=found.run,
                artifact_dir=found.artifact_dir,
                package=found.package,
                smoke=found.smoke,
                model_name=model_name,
                metric_name=str(params["metric"]),
                metric=found.mean,
                margin=float(params["margin"]),
                lineage=lineage,
                description=found.description,
            )
        except VerificationError as err:  # not registered; the other runs still are
            log.error("registry %s: refused, %s", found.run, err)
            return {"run": found.run, "version": None, "promoted": False,
                    "reason": f"refused: {err}", "lineage": lineage}  # fmt: skip
    log.debug(
        "registry %s: seed %d of %d (val %s mean %.4f), version %s, %s",
        found.run, found.seed, n_seeds, params["metric"], found.mean, decision.version,
        decision.reason,
    )  # fmt: skip
    return dataclasses.asdict(decision) | {"lineage": lineage}
