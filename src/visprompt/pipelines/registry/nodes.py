"""Node of the registry pipeline: package, register and (maybe) promote each trained run."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from visprompt.data.shards import read_classes, read_split
from visprompt.pipelines import tracking
from visprompt.registry.promotion import champion, register_and_promote
from visprompt.training import Preprocess
from visprompt.weights import fingerprint

log = logging.getLogger(__name__)


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
    backbone_spec: dict[str, Any], class_names: list[str], project_root: str
) -> dict[str, Any]:
    """package.json of a version: classes, preprocessing, backbone reference (no weights)."""
    preprocess = Preprocess.from_data_config(backbone_spec["data_config"])
    reference = {
        k: backbone_spec[k]
        for k in ("name", "model_kwargs", "weights_path", "sha256", "source")
        if k in backbone_spec
    }
    return {
        "class_names": class_names,
        "preprocessing": dataclasses.asdict(preprocess),
        "backbone": reference,
        "project_root": project_root,
    }


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


def register_runs(
    run_names: list[str],
    shards: str,
    validation_summary: dict[str, Any],
    backbone_specs: dict[str, dict[str, Any]],
    training: dict[str, Any],
    params: dict[str, Any],
    *results: Any,
) -> dict[str, Any]:
    """Register each run's artifact under `registry.model_name`, in order; the summary.

    `results` holds (artifact_dir, train_summary) per run, in `run_names` order. Each
    version is logged in its own nested MLflow run and carries its lineage as tags.
    """
    if len(results) != 2 * len(run_names):
        raise ValueError(f"expected 2 inputs per run for {run_names}, got {len(results)}")
    metric_name = str(params["metric"])
    classes = read_classes(shards)
    examples = read_split(shards, "val")[0][: int(params["num_examples"])]
    common = {
        "git_commit": git_commit(),
        "data_hash": str(validation_summary.get("data_hash", "unknown")),
        "kedro_run_id": kedro_run_id(),
    }
    decisions = []
    for run, artifact_dir, summary in zip(run_names, results[0::2], results[1::2], strict=True):
        if metric_name not in summary:
            raise ValueError(
                f"{run}.train_summary has no '{metric_name}' (keys: {sorted(summary)}); set "
                "registry.metric in parameters_registry.yml to one of them"
            )
        spec = backbone_specs[summary["backbone"]]
        package = build_package(spec, classes, str(Path.cwd()))
        run_params = training["runs"][run]
        lineage = common | {
            "params_hash": fingerprint(run_params, training.get("defaults"), spec["sha256"]),
            "training_mlflow_run_id": str(summary.get("mlflow_run_id", "none")),
            "method": summary["method"],
            "backbone_sha256": spec["sha256"],
        }
        with tracking.nested_run(f"register_{run}", tags={"visprompt.stage": "registry"}) as r:
            lineage["mlflow_run_id"] = r.info.run_id
            decision = register_and_promote(
                run=run,
                artifact_dir=artifact_dir,
                package=package,
                example_images=examples,
                model_name=str(params["model_name"]),
                metric_name=metric_name,
                metric=float(summary[metric_name]),
                margin=float(params["margin"]),
                lineage=lineage,
                lock_file=str(params["lock_file"]),
            )
        log.info("registry %s: version %s, %s", run, decision.version, decision.reason)
        decisions.append(dataclasses.asdict(decision) | {"lineage": lineage})
    current = champion(MlflowClient(), str(params["model_name"]))
    return {
        "model_name": params["model_name"],
        "metric": metric_name,
        "margin": float(params["margin"]),
        "decisions": decisions,
        "champion": current.version if current else None,
    }
