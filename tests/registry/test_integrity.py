"""Every load verifies checksums; versions reach their backbone through the tracking store."""

from __future__ import annotations

import json
import shutil
import sqlite3
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from registry_kit import (
    example_images,
    flip_byte,
    make_package,
    offline_labels,
    register_candidate,
    stored_file,
)

from visprompt.backbones import sha256_file
from visprompt.registry.__main__ import main
from visprompt.registry.backbone_store import SHA_TAG
from visprompt.registry.integrity import read_smoke_set, smoke_frame, write_smoke_set
from visprompt.registry.promotion import CHAMPION, rollback

PROMPT = "artifacts/prompt/prompt.safetensors"
PACKAGE = "artifacts/package/package.json"


def _champion(name: str) -> str:
    return MlflowClient().get_model_version_by_alias(name, CHAMPION).version


def test_a_flipped_byte_in_a_registered_version_is_refused_at_load(
    project: Path, model_name: str
) -> None:
    decision = register_candidate(project, model_name, seed=1, metric=0.5)
    flip_byte(stored_file(model_name, decision.version, PROMPT))
    with pytest.raises(ValueError, match=r"prompt\.safetensors has sha256 .* corrupted"):
        mlflow.pyfunc.load_model(f"models:/{model_name}@{CHAMPION}")


def _rewrite_package(name: str, version: str, change) -> None:
    """Edit a stored version's package.json as an attacker with write access to the files."""
    path = stored_file(name, version, PACKAGE)
    package = json.loads(path.read_text())
    change(package)
    path.write_text(json.dumps(package, indent=2, sort_keys=True))


def test_a_package_with_rotated_class_names_is_refused_at_load(
    project: Path, model_name: str
) -> None:
    decision = register_candidate(project, model_name, seed=21, metric=0.5)
    names = mlflow.pyfunc.load_model(f"models:/{model_name}/{decision.version}")
    assert names.unwrap_python_model().class_names == ["0", "1", "2", "3", "4"]

    def rotate(package: dict) -> None:
        package["class_names"] = package["class_names"][1:] + package["class_names"][:1]

    _rewrite_package(model_name, decision.version, rotate)
    with pytest.raises(ValueError, match=r"package\.json has sha256 .* registry recorded"):
        mlflow.pyfunc.load_model(f"models:/{model_name}@{CHAMPION}")


def test_corrupted_weights_with_a_rewritten_checksum_are_refused_at_load(
    project: Path, model_name: str
) -> None:
    decision = register_candidate(project, model_name, seed=22, metric=0.5)
    weights = stored_file(model_name, decision.version, PROMPT)
    flip_byte(weights)

    def cover_up(package: dict) -> None:
        package["checksums"]["prompt"]["prompt.safetensors"] = sha256_file(weights)

    _rewrite_package(model_name, decision.version, cover_up)
    with pytest.raises(ValueError, match=r"package\.json has sha256 .* changed afterwards"):
        mlflow.pyfunc.load_model(f"models:/{model_name}/{decision.version}")


def test_a_copy_outside_any_store_is_refused_naming_the_registry(
    project: Path, model_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision = register_candidate(project, model_name, seed=23, metric=0.5)
    local = mlflow.artifacts.download_artifacts(
        f"models:/{model_name}/{decision.version}", dst_path=str(tmp_path)
    )
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(None)
    try:
        with pytest.raises(ValueError, match="no tracking store is set .* MLFLOW_TRACKING_URI"):
            mlflow.pyfunc.load_model(local)
    finally:
        mlflow.set_tracking_uri(f"sqlite:///{project}/mlflow/mlflow.db")


def test_corrupted_backbone_weights_in_the_store_are_refused(
    project: Path, model_name: str
) -> None:
    _, package, _ = make_package(project, seed=2, weights_name="vit_other")
    decision = register_candidate(project, model_name, seed=2, metric=0.5)
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`{SHA_TAG}` = '{package['backbone']['sha256']}'",
        output_format="list",
    )
    assert len(runs) == 1  # stored once, though registered twice across the tests
    stored = Path(runs[0].info.artifact_uri.removeprefix("file://")) / "weights"
    flip_byte(next(stored.glob("*.safetensors")), offset=-5)
    with pytest.raises(ValueError, match=r"backbone weights runs:/.* sha256 .* corrupted"):
        mlflow.pyfunc.load_model(f"models:/{model_name}/{decision.version}")
    flip_byte(next(stored.glob("*.safetensors")), offset=-5)  # restore for the other tests


def test_a_version_loads_anywhere_and_ignores_files_in_the_cwd(
    project: Path, model_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, package, model = make_package(project, seed=3)
    register_candidate(project, model_name, seed=3, metric=0.5)
    # the checkout's weights are gone; the cwd holds a different file under the same name
    (project / package["backbone"]["weights_path"]).unlink()
    elsewhere = tmp_path / "elsewhere"
    conflicting = elsewhere / package["backbone"]["weights_path"]
    conflicting.parent.mkdir(parents=True)
    conflicting.write_bytes(b"\0" * 64)
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("VISPROMPT_PROJECT_DIR", str(elsewhere))
    images = example_images(6, seed=4)
    answer = mlflow.pyfunc.load_model(f"models:/{model_name}@{CHAMPION}").predict(
        smoke_frame(images)
    )
    assert answer["label"].tolist() == offline_labels(model, package, images).tolist()


def test_a_copy_of_the_store_on_another_path_serves_after_relocate(
    project: Path, model_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, package, model = make_package(project, seed=7)
    register_candidate(project, model_name, seed=7, metric=0.5)
    host = tmp_path / "host" / "store"  # the deployment host's copy of the whole store
    shutil.copytree(project / "mlflow", host)
    monkeypatch.chdir(tmp_path)  # outside any project (before the rename: cwd is restored)
    gone = project.with_name(project.name + "-gone")
    project.rename(gone)  # the original is no longer at the path the store records
    uri = f"sqlite:///{host}/mlflow.db"
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        champion = f"models:/{model_name}@{CHAMPION}"
        with pytest.raises(MlflowException, match="No such artifact"):  # absolute paths
            mlflow.pyfunc.load_model(champion)
        main(["relocate", "--from", str(project / "mlflow")])
        images = example_images(6, seed=8)
        answer = mlflow.pyfunc.load_model(champion).predict(smoke_frame(images))
        assert answer["label"].tolist() == offline_labels(model, package, images).tolist()
        with pytest.raises(ValueError, match=r"no artifact location under .*artifact roots"):
            main(["relocate", "--from", str(project / "mlflow")])  # nothing left to move
    finally:
        gone.rename(project)
        mlflow.set_tracking_uri(f"sqlite:///{project}/mlflow/mlflow.db")


def test_rollback_refuses_a_truncated_target(project: Path, model_name: str) -> None:
    first = register_candidate(project, model_name, seed=5, metric=0.5)
    second = register_candidate(project, model_name, seed=6, metric=0.7)
    target = stored_file(model_name, first.version, PROMPT)
    backup = target.read_bytes()
    target.write_bytes(backup[: len(backup) // 2])
    with pytest.raises(RuntimeError, match=f"refusing to roll .* back to version {first.version}"):
        rollback(model_name)
    assert _champion(model_name) == second.version
    target.write_bytes(backup)
    assert rollback(model_name) == first.version


def test_the_smoke_set_of_read_only_arrays_is_written_without_a_warning(tmp_path: Path) -> None:
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    labels = np.array([3, 1], dtype=np.int64)
    images.flags.writeable = labels.flags.writeable = False  # as a split's arrays may be
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it shares a read-only array
        write_smoke_set(tmp_path / "smoke.safetensors", images, labels)
    back_images, back_labels = read_smoke_set(tmp_path / "smoke.safetensors")
    assert np.array_equal(back_images, images) and np.array_equal(back_labels, labels)


def _locations(db_file: Path) -> list[str]:
    with sqlite3.connect(db_file) as db:
        rows = db.execute("select storage_location from model_versions").fetchall()
        rows += db.execute("select artifact_location from logged_models").fetchall()
    return [row[0] for row in rows]


def test_relocate_resolves_a_relative_uri_from_another_cwd(
    project: Path, model_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, package, model = make_package(project, seed=24)
    register_candidate(project, model_name, seed=24, metric=0.5)
    host = tmp_path / "host"
    shutil.copytree(project / "mlflow", host / "store")
    monkeypatch.chdir(host)  # the relative URI is relative to this folder
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///store/mlflow.db")
    mlflow.set_tracking_uri("sqlite:///store/mlflow.db")
    try:
        main(["relocate", "--from", str(project / "mlflow")])
    finally:
        mlflow.set_tracking_uri(f"sqlite:///{project}/mlflow/mlflow.db")
    new_root = str(host / "store") + "/"
    assert all(location.startswith(new_root) for location in _locations(host / "store/mlflow.db"))
    monkeypatch.chdir(tmp_path)  # served from elsewhere, through an absolute URI
    uri = f"sqlite:///{host}/store/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    try:
        images = example_images(4, seed=25)
        answer = mlflow.pyfunc.load_model(f"models:/{model_name}@{CHAMPION}").predict(
            smoke_frame(images)
        )
    finally:
        mlflow.set_tracking_uri(f"sqlite:///{project}/mlflow/mlflow.db")
    assert answer["label"].tolist() == offline_labels(model, package, images).tolist()


def test_relocate_refuses_a_copy_without_its_version_folders_and_changes_nothing(
    project: Path, model_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision = register_candidate(project, model_name, seed=26, metric=0.5)
    host = tmp_path / "partial"
    shutil.copytree(project / "mlflow", host)
    version_dir = stored_file(model_name, decision.version, "MLmodel").parents[1]
    shutil.rmtree(host / version_dir.relative_to(project / "mlflow"))  # the copy lacks it
    database = (host / "mlflow.db").read_bytes()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{host}/mlflow.db")
    mlflow.set_tracking_uri(f"sqlite:///{host}/mlflow.db")
    try:
        with pytest.raises(FileNotFoundError, match=rf"{model_name}/{decision.version}: .* left"):
            main(["relocate", "--from", str(project / "mlflow")])
    finally:
        mlflow.set_tracking_uri(f"sqlite:///{project}/mlflow/mlflow.db")
    assert (host / "mlflow.db").read_bytes() == database
    assert not list(host.glob(".mlflow.db.*"))
