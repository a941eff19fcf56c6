"""Node of the registry pipeline: package, register and (maybe) promote each trained run."""

from __future__ import annotations

import dataclasses
import logging
import math
import subprocess
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from visprompt.data.shards import read_classes, read_split
from visprompt.pipelines import tracking
from visprompt.registry.promotion import (
    SmokeSet,
    VerificationError,
    already_registered,
    champion,
    register_and_promote,
)
from visprompt.registry.serving import ServingLimits
from visprompt.training import Preprocess
from visprompt.weights import fingerprint

log = logging.getLogger(__name__)

#: How a registered PGN serves: `rgb` = prompt inversion in front of the unmodified ViT.
PGN_SERVING = ("rgb", "token")


def git_commit(root: str | Path = ".") -> str:
    """HEAD's commit, with `-dirty` when tracked files changed; `unknown` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def kedro_run_id() -> str:
    """The Kedro session id that kedro-mlflow tagged on the active run (`run_id`)."""
    active = mlflow.active_run()
    if active is None:
        return "none"
    return MlflowClient().get_run(active.info.run_id).data.tags.get("run_id", "none")


def build_package(
    backbone_spec: dict[str, Any],
    class_names: list[str],
    stored_size: int,
    serving: dict[str, Any] | None = None,
    pgn_serving: str = "rgb",
) -> dict[str, Any]:
    """package.json of a version: classes, preprocessing, serving limits, backbone spec,
    and how a PGN serves (`rgb`: prompt inversion in front of the unmodified ViT; `token`).

    `stored_size` is the side of the ingested shards: serving brings a request image to it
    with ingestion's own conversion before the training preprocessing.
    """
    if pgn_serving not in PGN_SERVING:
        raise ValueError(
            f"parameters_registry.yml: registry.pgn_serving must be one of {list(PGN_SERVING)}, "
            f"got {pgn_serving!r}"
        )
    preprocess = Preprocess.from_data_config(backbone_spec["data_config"])
    spec = {
        k: backbone_spec[k]
        for k in ("name", "model_kwargs", "weights_path", "sha256", "source")
        if k in backbone_spec
    }
    return {
        "class_names": class_names,
        "preprocessing": dataclasses.asdict(preprocess) | {"stored_size": int(stored_size)},
        "backbone": spec,
        "serving": dataclasses.asdict(ServingLimits(**(serving or {}))),
        "pgn_serving": pgn_serving,
    }


def smoke_set(
    images: np.ndarray, labels: np.ndarray, accuracy: float, settings: dict[str, Any]
) -> SmokeSet:
    """The validation split (a seeded subset above `max_images`) and the run's val accuracy.

    On a subset the recorded full-split accuracy is only an estimate: the tolerance widens to
    three binomial standard errors, still far below what corrupted weights lose.
    """
    cap = int(settings.get("max_images") or len(labels))
    tolerance = float(settings.get("tolerance", 0.01))
    if len(labels) > cap:
        chosen = np.sort(np.random.default_rng(0).choice(len(labels), cap, replace=False))
        images, labels = images[chosen], labels[chosen]
        p = min(max(accuracy, 0.0), 1.0)
        tolerance = max(tolerance, 3 * math.sqrt(p * (1 - p) / cap))
    return SmokeSet(images, labels, float(accuracy), tolerance)


def selected_runs(configured: list[str], wanted: list[str] | None) -> list[str]:
    """`registry.runs` (null: every configured run), checked against the training runs."""
    if wanted is None:
        return list(configured)
    unknown = sorted(set(wanted) - set(configured))
    if unknown:
        raise ValueError(
            f"parameters_registry.yml: registry.runs names {unknown}, which are not training "
            f"runs (training.runs: {configured}); fix the list or set it to null"
        )
    return [run for run in configured if run in wanted]


def select_candidate(
    run: str, summaries: Mapping[int, Mapping[str, Any]], metric_name: str
) -> tuple[int, float]:
    """(seed, mean): a run's candidate is its seed whose validation `metric_name` is closest
    to the mean over seeds (ties: the lowest seed); promotion compares that mean.

    The mean is what the comparison trusts; registering the most typical seed (rather than
    the luckiest) keeps the registered artifact representative of it.
    """
    if not summaries:
        raise ValueError(f"run '{run}' has no trained seed to register")
    values = {}
    for seed, summary in summaries.items():
        if metric_name not in summary:
            raise ValueError(
                f"{run}.seed_{seed}.train_summary has no '{metric_name}' (keys: "
                f"{sorted(summary)}); set registry.metric in parameters_registry.yml to one of them"
            )
        values[int(seed)] = float(summary[metric_name])
    mean = sum(values.values()) / len(values)
    seed = min(values, key=lambda s: (abs(values[s] - mean), s))
    return seed, mean


def register_runs(
    layout: list[tuple[str, int]],
    shards: str,
    validation_summary: dict[str, Any],
    backbone_specs: dict[str, dict[str, Any]],
    training: dict[str, Any],
    params: dict[str, Any],
    *results: Any,
) -> dict[str, Any]:
    """Register each run's candidate seed under `registry.model_name`, in order; the summary.

    `results` holds (artifact_dir, train_summary) per (run, seed) of `layout`, in its order.
    A run's candidate is `select_candidate`'s seed, promoted on the validation mean over
    seeds. Each version is logged in its own nested MLflow run and carries its lineage (the
    seed, the mean and the number of seeds included) as tags.
    """
    if len(results) != 2 * len(layout):
        raise ValueError(f"expected 2 inputs per (run, seed) for {layout}, got {len(results)}")
    metric_name = str(params["metric"])
    per_run: dict[str, dict[int, tuple[str, dict[str, Any]]]] = {}
    for (run, seed), artifact, summary in zip(layout, results[0::2], results[1::2], strict=True):
        per_run.setdefault(run, {})[int(seed)] = (artifact, summary)
    classes = read_classes(shards)
    val_images, val_labels = read_split(shards, "val")
    common = {
        "git_commit": git_commit(),
        "data_hash": str(validation_summary.get("data_hash", "unknown")),
        "kedro_run_id": kedro_run_id(),
    }
    decisions = []
    for run, seeds in per_run.items():
        seed, mean = select_candidate(run, {s: v[1] for s, v in seeds.items()}, metric_name)
        artifact_dir, summary = seeds[seed]
        if "val_top1" not in summary:
            raise ValueError(
                f"{run}.seed_{seed}.train_summary has no 'val_top1' (the artifact's validation "
                "accuracy, which the smoke test must reproduce); rerun the training pipeline"
            )
        spec = backbone_specs[summary["backbone"]]
        package = build_package(
            spec,
            classes,
            val_images.shape[1],
            params.get("serving"),
            str(params.get("pgn_serving", "rgb")),
        )
        smoke = smoke_set(val_images, val_labels, float(summary["val_top1"]), params["smoke"])
        run_params = training["runs"][run]
        lineage = common | {
            "params_hash": fingerprint(run_params, training.get("defaults"), spec["sha256"]),
            "training_mlflow_run_id": str(summary.get("mlflow_run_id", "none")),
            "method": summary["method"],
            "backbone_sha256": spec["sha256"],
            "seed": str(seed),
            "n_seeds": str(len(seeds)),
            f"{metric_name}_seed_mean": repr(mean),
        }
        # a version already registered logs nothing: no nested run for it (no empty copy)
        model_name = str(params["model_name"])
        unchanged = already_registered(model_name, artifact_dir, package, smoke)
        tags = {"visprompt.stage": "registry"}
        opened = nullcontext() if unchanged else tracking.nested_run(f"register_{run}", tags=tags)
        with opened as r:
            if r is not None:
                lineage["mlflow_run_id"] = r.info.run_id
            try:
                decision = register_and_promote(
                    run=run,
                    artifact_dir=artifact_dir,
                    package=package,
                    smoke=smoke,
                    model_name=model_name,
                    metric_name=metric_name,
                    metric=mean,
                    margin=float(params["margin"]),
                    lineage=lineage,
                )
            except VerificationError as err:  # not registered; the other runs still are
                log.error("registry %s: refused, %s", run, err)
                decisions.append({"run": run, "version": None, "promoted": False,
                                  "reason": f"refused: {err}", "lineage": lineage})  # fmt: skip
                continue
        log.debug(
            "registry %s: seed %d of %d (val %s mean %.4f), version %s, %s",
            run, seed, len(seeds), metric_name, mean, decision.version, decision.reason,
        )  # fmt: skip
        decisions.append(dataclasses.asdict(decision) | {"lineage": lineage})
    current = champion(MlflowClient(), str(params["model_name"]))
    return {
        "model_name": params["model_name"],
        "metric": metric_name,
        "margin": float(params["margin"]),
        "decisions": decisions,
        "champion": current.version if current else None,
    }
