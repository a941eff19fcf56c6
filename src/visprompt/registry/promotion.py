"""Register prompt artifacts and move the `champion` alias only when it is earned.

One registration is a small state machine on the model version's `validation_status` tag,
run entirely under the registry lock (`locking.registry_lock`), so concurrent registry runs
of the same artifact produce one version:

1. log the pyfunc model (backbone weights stored once per sha256, see `backbone_store`);
2. register it with status `pending`;
3. verify it as a user would load it: checksums, then the smoke accuracy on the stored
   validation images must reproduce the recorded one; a failure deletes the version;
4. alias `challenger`; `champion` moves when its metric beats the champion's by `margin`;
5. status `passed`.

A run killed anywhere leaves at most a `pending` version, which the next run of the same
artifact resumes from step 3; the champion only ever moves to a verified version, and a
model that had one always keeps one. A completed version is never registered or promoted
again (a rollback stands). Rollback verifies its target the same way and refuses a broken one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array
from mlflow.utils import logging_utils
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import visprompt
from visprompt.backbones import sha256_file
from visprompt.registry import backbone_store
from visprompt.registry.integrity import (
    PACKAGE_DIGEST_TAG,
    SMOKE_FILE,
    check_accuracy,
    file_checksums,
    read_smoke_set,
    smoke_frame,
    write_smoke_set,
)
from visprompt.registry.locking import registry_lock
from visprompt.registry.pyfunc_model import (
    CODE_DIR,
    MODEL_CODE,
    PACKAGE_ARTIFACT,
    PACKAGE_FILE,
    PROMPT_ARTIFACT,
    read_package,
)
from visprompt.registry.serving import ServingLimits

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
STATUS_TAG = "validation_status"
ARTIFACT_TAG = "artifact_sha256"
SMOKE_TAG = "smoke_accuracy"
PENDING, PASSED = "pending", "passed"

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec(DataType.string, "image")]),
    outputs=Schema(
        [
            ColSpec(DataType.long, "label"),
            ColSpec(DataType.string, "class_name"),
            ColSpec(DataType.double, "confidence"),
            ColSpec(Array(DataType.double), "probabilities"),
            ColSpec(DataType.boolean, "out_of_distribution"),  # pyfunc_model: calibration
            ColSpec(DataType.double, "ood_score"),
        ]
    ),
)

#: What the version's code imports when it loads and serves (its `code/visprompt` does the rest):
#: serving's calibration lives in `visprompt.evaluation`, whose package imports torchmetrics,
#: scipy and matplotlib.
RUNTIME_PACKAGES = (
    "mlflow", "torch", "timm", "safetensors", "peft", "numpy", "pandas", "pillow", "pydantic",
    "torchmetrics", "scipy", "matplotlib",
)  # fmt: skip


def runtime_requirements(roots: tuple[str, ...] = RUNTIME_PACKAGES) -> list[str]:
    """`name==version` of `roots` and of everything they require, as installed here.

    The whole closure, pinned, so `pip install -r requirements.txt` into a fresh venv builds
    this environment again instead of resolving newer releases. Read from the installed
    metadata because MLflow's inference would start a subprocess that imports the whole
    model stack on every log (a minute per version on a busy CPU).
    """
    pinned: dict[str, str] = {}
    todo, seen = [(name, frozenset[str]()) for name in roots], set()
    while todo:
        name, extras = todo.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:  # required only on another platform or extra
            continue
        pinned[canonicalize_name(dist.metadata["Name"])] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            envs = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if requirement.marker is None or any(requirement.marker.evaluate(e) for e in envs):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return [f"{name}=={version}" for name, version in sorted(pinned.items())]


def package_code(destination: Path) -> Path:
    """A copy of the running visprompt package (no bytecode), for the version to carry."""
    source = Path(visprompt.__file__).parent
    return shutil.copytree(
        source, destination / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


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
    #: True when the artifact was already a verified version: nothing was registered
    unchanged: bool = False


class VerificationError(RuntimeError):
    """A version that does not load, or whose smoke test does not reproduce its accuracy."""


@dataclass(frozen=True)
class SmokeSet:
    """Stored validation images (uint8 NHWC), their labels, and the candidate's recorded
    accuracy on them; the smoke test must reproduce it within `tolerance`."""

    images: np.ndarray
    labels: np.ndarray
    accuracy: float
    tolerance: float = 0.01


def artifact_digest(artifact_dir: str | Path, package: dict[str, Any], smoke: SmokeSet) -> str:
    """sha256 naming a candidate: its files, package (backbone by checksum) and smoke set."""
    digest = hashlib.sha256(json.dumps(file_checksums(artifact_dir), sort_keys=True).encode())
    digest.update(json.dumps(package, sort_keys=True, default=str).encode())
    digest.update(np.ascontiguousarray(smoke.images).tobytes())
    digest.update(np.ascontiguousarray(smoke.labels, dtype=np.int64).tobytes())
    digest.update(repr((float(smoke.accuracy), float(smoke.tolerance))).encode())
    return digest.hexdigest()


def _experiment_id() -> str:
    active = mlflow.active_run()
    if active is not None:
        return active.info.experiment_id
    return mlflow.tracking.fluent._get_experiment_id()


def log_prompt_model(
    artifact_dir: str | Path, package: dict[str, Any], smoke: SmokeSet, backbone_root: str | Path
) -> mlflow.models.model.ModelInfo:
    """Log the version's files as a models-from-code pyfunc (not registered yet)."""
    client = MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        # MLflow keeps a directory artifact's own name: copy under fixed names
        prompt_dir = shutil.copytree(artifact_dir, Path(tmp) / PROMPT_ARTIFACT)
        package_dir = Path(tmp) / PACKAGE_ARTIFACT
        package_dir.mkdir()
        code = package_code(Path(tmp) / CODE_DIR)
        write_smoke_set(package_dir / SMOKE_FILE, smoke.images, smoke.labels)
        contents = package | {
            "backbone": backbone_store.reference(
                client, _experiment_id(), package["backbone"], backbone_root
            ),
            "smoke": {
                "accuracy": float(smoke.accuracy),
                "tolerance": float(smoke.tolerance),
                "num_images": len(smoke.labels),
            },
            "checksums": {
                PROMPT_ARTIFACT: file_checksums(prompt_dir),
                PACKAGE_ARTIFACT: file_checksums(package_dir),
                # as MLflow stores code_paths: <model>/code/visprompt/...
                CODE_DIR: file_checksums(code.parent),
            },
        }
        (package_dir / PACKAGE_FILE).write_text(json.dumps(contents, indent=2, sort_keys=True))
        return mlflow.pyfunc.log_model(
            name="prompt_model",
            python_model=str(MODEL_CODE),
            artifacts={PROMPT_ARTIFACT: str(prompt_dir), PACKAGE_ARTIFACT: str(package_dir)},
            code_paths=[str(code)],
            signature=SIGNATURE,
            input_example=smoke_frame(smoke.images[:2]),
            pip_requirements=runtime_requirements(),
            # the whole-version digest lives in the database, not among the files it protects
            tags={PACKAGE_DIGEST_TAG: sha256_file(package_dir / PACKAGE_FILE)},
        )


def verify_version(model_uri: str) -> float:
    """Load `model_uri` as a user would (every checksum) and rerun its smoke test.

    Returns the smoke accuracy; raises naming the version when anything does not hold.
    """
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
            model = mlflow.pyfunc.load_model(str(local))
            package_dir = local / "artifacts" / PACKAGE_ARTIFACT
            package = read_package(package_dir)
            images, labels = read_smoke_set(package_dir / SMOKE_FILE)
            # as a client would: requests within the version's own serving limits
            step = ServingLimits.resolve(package.get("serving")).max_images
            predicted = np.concatenate(
                [
                    np.asarray(model.predict(smoke_frame(images[i : i + step]))["label"])
                    for i in range(0, len(images), step)
                ]
            )
        except Exception as err:
            raise VerificationError(f"{model_uri} does not load and predict: {err}") from err
        smoke = package["smoke"]
        try:
            return check_accuracy(
                labels, predicted, smoke["accuracy"], smoke["tolerance"], model_uri
            )
        except RuntimeError as err:
            raise VerificationError(str(err)) from err


def champion(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def champion_version(model_name: str) -> str | None:
    current = champion(MlflowClient(), model_name)
    return current.version if current else None


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


def _registered(client: MlflowClient, model_name: str, digest: str) -> ModelVersion | None:
    for version in client.search_model_versions(f"name='{model_name}'"):
        if version.tags.get(ARTIFACT_TAG) == digest:
            return version
    return None


def already_registered(
    model_name: str, artifact_dir: str | Path, package: dict[str, Any], smoke: SmokeSet
) -> bool:
    """Whether this candidate is a verified version already (`register_and_promote` would
    log nothing and return it unchanged), so callers need not open a run for it."""
    existing = _registered(
        MlflowClient(), model_name, artifact_digest(artifact_dir, package, smoke)
    )
    return existing is not None and existing.tags.get(STATUS_TAG, PASSED) == PASSED


def _promote(
    client: MlflowClient, name: str, version: str, metric_name: str, metric: float, margin: float
) -> tuple[ModelVersion | None, float | None, bool, str]:
    """Move `champion` to `version` if it wins; idempotent when resumed after a kill."""
    current = champion(client, name)
    if current is not None and current.version == version:  # killed after the alias move
        return current, float(metric), True, "resumed: already champion"
    before = _tagged_metric(current, name, metric_name) if current else None
    # "beats by at least margin": strictly better, so a tie leaves the champion in place
    # even with margin 0 (1e-12 absorbs float subtraction error)
    promoted = before is None or (metric > before and metric - before >= margin - 1e-12)
    if promoted:
        history = [v for v in _history(client, name) if v != version] + [version]
        _set_champion(client, name, version, history)
    reason = (
        "first champion"
        if before is None
        else f"{metric_name} {metric:.4f} {'beats' if promoted else 'does not beat'} "
        f"champion {before:.4f} by margin {margin}"
    )
    return current, before, promoted, reason


@contextlib.contextmanager
def _quiet_mlflow_events() -> Iterator[None]:
    """MLflow's event stream off: `register_model` prints "Successfully registered model",
    "Created version ..." with `print` (not a logger a level reaches), once per version; the
    registry node reports its decisions itself. MLflow's own switch, restored afterwards."""
    stream = logging_utils.MLFLOW_LOGGING_STREAM
    enabled = stream.enabled
    logging_utils.disable_logging()
    try:
        yield
    finally:
        stream.enabled = enabled


def register_and_promote(
    *,
    run: str,
    artifact_dir: str | Path,
    package: dict[str, Any],
    smoke: SmokeSet,
    model_name: str,
    metric_name: str,
    metric: float,
    margin: float,
    lineage: dict[str, str],
    backbone_root: str | Path = ".",
    description: str = "",
) -> Decision:
    """Log, register, verify, alias and maybe promote one candidate (see the module doc).

    `package`: class_names, preprocessing (image_size, mean, std, stored_size), backbone
    (a `backbone_specs` entry; its weights_path is relative to `backbone_root`), serving.
    """
    client = MlflowClient()
    digest = artifact_digest(artifact_dir, package, smoke)
    with registry_lock(model_name):
        existing = _registered(client, model_name, digest)
        if existing is not None and existing.tags.get(STATUS_TAG, PASSED) == PASSED:
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
                unchanged=True,
            )
        if existing is None:
            info = log_prompt_model(artifact_dir, package, smoke, backbone_root)
            tags = lineage | {
                metric_name: repr(float(metric)),
                "run": run,
                STATUS_TAG: PENDING,
                ARTIFACT_TAG: digest,
                SMOKE_TAG: repr(float(smoke.accuracy)),
            }
            with _quiet_mlflow_events():
                version = mlflow.register_model(info.model_uri, model_name, tags=tags).version
            if description:
                client.update_model_version(model_name, version, description=description)
        else:
            version = existing.version  # a registration interrupted before it was verified
        try:
            verify_version(f"models:/{model_name}/{version}")
        except Exception:
            current = champion(client, model_name)
            if current is None or current.version != version:  # never delete the champion
                client.delete_model_version(model_name, version)
            raise
        client.set_registered_model_alias(model_name, CHALLENGER, version)
        current, before, promoted, reason = _promote(
            client, model_name, version, metric_name, float(metric), margin
        )
        client.set_model_version_tag(model_name, version, STATUS_TAG, PASSED)
    if existing is not None:
        reason = f"completed an interrupted registration; {reason}"
    return Decision(
        run, version, metric, current.version if current else None, before, promoted, reason
    )


def rollback(model_name: str) -> str:
    """Move `champion` back to the previous champion once it passes its checks; return it."""
    client = MlflowClient()
    with registry_lock(model_name):
        history = _history(client, model_name)
        if len(history) < 2:
            raise RuntimeError(
                f"'{model_name}' has no previous champion to roll back to (history: {history})"
            )
        target = history[-2]
        try:
            verify_version(f"models:/{model_name}/{target}")
        except VerificationError as err:
            raise RuntimeError(
                f"refusing to roll '{model_name}' back to version {target}: {err}; champion "
                f"stays at version {history[-1]}"
            ) from err
        _set_champion(client, model_name, target, history[:-1])
        return target
