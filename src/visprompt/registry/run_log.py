"""MLflow calls pipeline nodes need beside catalog datasets and `pipelines.tracking`'s nested
runs (a tag known late, per-step metrics, files, ids), so node modules import no mlflow."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from visprompt.registry.promotion import champion


def set_tag(key: str, value: str) -> None:
    mlflow.set_tag(key, value)


def log_steps(name: str, values: Mapping[int | str, float]) -> None:
    """One metric per step (e.g. seconds per layer, step = layer) on the active run."""
    for step, value in values.items():
        mlflow.log_metric(name, value, step=int(step))


def log_files(paths: Iterable[str | Path], artifact_path: str) -> None:
    for path in paths:
        mlflow.log_artifact(str(path), artifact_path)


def kedro_run_id() -> str:
    """The Kedro session id that kedro-mlflow tagged on the active run (`run_id`)."""
    active = mlflow.active_run()
    if active is None:
        return "none"
    return MlflowClient().get_run(active.info.run_id).data.tags.get("run_id", "none")


def champion_version(model_name: str) -> str | None:
    current = champion(MlflowClient(), model_name)
    return current.version if current else None
