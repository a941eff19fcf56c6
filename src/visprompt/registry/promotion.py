"""Register prompt artifacts and move the `champion` alias only when it is earned.

A new version first gets a smoke prediction in this process (loaded back from the logged
model), then the alias `challenger`; `champion` moves to it only when its validation
metric beats the current champion's by `margin`. Every promotion decision happens under
an exclusive lock and re-reads the champion inside it, so two concurrent registry runs
cannot both win on a stale comparison, and `champion` only ever points at a version that
passed its smoke test. The champion history is kept on the registered model for rollback.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from visprompt.backbones import sha256_file
from visprompt.registry.pyfunc_model import (
    PACKAGE_ARTIFACT,
    PACKAGE_FILE,
    PROMPT_ARTIFACT,
    PromptClassifier,
    encode_png,
)

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
STATUS_TAG = "validation_status"
ARTIFACT_TAG = "artifact_sha256"

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "image")]),
    outputs=Schema(
        [ColSpec("long", "label"), ColSpec("string", "class_name"), ColSpec("double", "confidence")]
    ),
)


#: What the pyfunc model imports at load time (`--env-manager local` serves from this venv).
RUNTIME_PACKAGES = ("torch", "timm", "safetensors", "peft", "numpy", "pandas", "pillow", "mlflow")


def runtime_requirements() -> list[str]:
    """Pinned requirements of the installed runtime packages.

    Given explicitly because MLflow's inference would start a subprocess that imports the
    whole model stack (torch, timm, mlflow) on every log: a minute per version on a busy CPU.
    """
    return [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]


@dataclass(frozen=True)
class Decision:
    """What a registry run did with one candidate."""

    run: str
    version: str
    metric: float
    champion_before: str | None
    champion_metric_before: float | None
    promoted: bool
    reason: str


@contextlib.contextmanager
def registry_lock(path: str | Path) -> Iterator[None]:
    """Exclusive inter-process lock around read-compare-move of the champion alias."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log_prompt_model(
    artifact_dir: str | Path, package: dict[str, Any], example_images: np.ndarray
) -> mlflow.models.model.ModelInfo:
    """Log the prompt artifact as a pyfunc model in the active MLflow run (not registered)."""
    example = pd.DataFrame({"image": [encode_png(img) for img in example_images]})
    with tempfile.TemporaryDirectory() as tmp:
        package_dir = Path(tmp) / "package"
        package_dir.mkdir()
        (package_dir / PACKAGE_FILE).write_text(json.dumps(package, indent=2, sort_keys=True))
        return mlflow.pyfunc.log_model(
            name="prompt_model",
            python_model=PromptClassifier(),
            artifacts={PROMPT_ARTIFACT: str(artifact_dir), PACKAGE_ARTIFACT: str(package_dir)},
            signature=SIGNATURE,
            input_example=example,
            pip_requirements=runtime_requirements(),
        )


def smoke_test(model_uri: str, example_images: np.ndarray, num_classes: int) -> None:
    """Load the logged model as a user would and check it answers sensibly."""
    example = pd.DataFrame({"image": [encode_png(img) for img in example_images]})
    answer = mlflow.pyfunc.load_model(model_uri).predict(example)
    labels = np.asarray(answer["label"])
    if len(answer) != len(example) or labels.min() < 0 or labels.max() >= num_classes:
        raise RuntimeError(f"smoke prediction of {model_uri} returned an invalid answer: {answer}")


def champion(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _tagged_metric(version: ModelVersion, model_name: str, metric_name: str) -> float:
    if metric_name not in version.tags:
        raise ValueError(
            f"champion version {version.version} of '{model_name}' has no '{metric_name}' tag, "
            f"so it cannot be compared (tags: {sorted(version.tags)}); use the metric it was "
            "registered with (parameters_registry.yml: registry.metric) or another model_name"
        )
    return float(version.tags[metric_name])


def _history(client: MlflowClient, name: str) -> list[str]:
    return json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))


def _set_champion(client: MlflowClient, name: str, version: str, history: list[str]) -> None:
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_registered_model_alias(name, CHAMPION, version)


def artifact_digest(artifact_dir: str | Path, package: dict[str, Any]) -> str:
    """sha256 over the artifact's files and the package (less the machine-specific root)."""
    digest = hashlib.sha256()
    root = Path(artifact_dir)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(root).as_posix()}:{sha256_file(file)}\n".encode())
    portable = {k: v for k, v in package.items() if k != "project_root"}
    digest.update(json.dumps(portable, sort_keys=True).encode())
    return digest.hexdigest()


def _registered(client: MlflowClient, model_name: str, digest: str) -> ModelVersion | None:
    for version in client.search_model_versions(f"name='{model_name}'"):
        if version.tags.get(ARTIFACT_TAG) == digest:
            return version
    return None


def register_and_promote(
    *,
    run: str,
    artifact_dir: str | Path,
    package: dict[str, Any],
    example_images: np.ndarray,
    model_name: str,
    metric_name: str,
    metric: float,
    margin: float,
    lineage: dict[str, str],
    lock_file: str | Path,
) -> Decision:
    """Log, smoke-test, register (alias challenger) and promote if better. Any failure
    before the alias move leaves `champion` where it was.

    An artifact already registered under `model_name` is not registered again: rerunning the
    registry changes nothing, and a rolled-back version is not promoted back.
    """
    client = MlflowClient()
    digest = artifact_digest(artifact_dir, package)
    existing = _registered(client, model_name, digest)
    if existing is not None:
        current = champion(client, model_name)
        before = _tagged_metric(current, model_name, metric_name) if current else None
        return Decision(
            run,
            existing.version,
            metric,
            current.version if current else None,
            before,
            False,
            f"unchanged artifact: already version {existing.version}",
        )
    info = log_prompt_model(artifact_dir, package, example_images)
    smoke_test(info.model_uri, example_images, len(package["class_names"]))
    tags = lineage | {
        metric_name: repr(float(metric)),
        "run": run,
        STATUS_TAG: "passed",
        ARTIFACT_TAG: digest,
    }
    version = mlflow.register_model(info.model_uri, model_name, tags=tags).version
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    with registry_lock(lock_file):
        current = champion(client, model_name)
        before = _tagged_metric(current, model_name, metric_name) if current else None
        # "beats by at least margin": strictly better, so a tie leaves the champion in place
        # even with margin 0 (1e-12 absorbs float subtraction error)
        promoted = before is None or (metric > before and metric - before >= margin - 1e-12)
        if promoted:
            _set_champion(client, model_name, version, _history(client, model_name) + [version])
        reason = (
            "first champion"
            if before is None
            else f"{metric_name} {metric:.4f} {'beats' if promoted else 'does not beat'} "
            f"champion {before:.4f} by margin {margin}"
        )
    return Decision(
        run, version, metric, current.version if current else None, before, promoted, reason
    )


def rollback(model_name: str, lock_file: str | Path) -> str:
    """Move `champion` back to the previous champion; return that version."""
    client = MlflowClient()
    with registry_lock(lock_file):
        history = _history(client, model_name)
        if len(history) < 2:
            raise RuntimeError(
                f"'{model_name}' has no previous champion to roll back to (history: {history})"
            )
        _set_champion(client, model_name, history[-2], history[:-1])
        return history[-2]
