"""Registration, guarded promotion, rollback, failure and concurrency on a real registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from registry_kit import example_images, make_package, register_candidate

from visprompt.data.transforms import to_model_input
from visprompt.registry.__main__ import main
from visprompt.registry.promotion import CHALLENGER, CHAMPION, register_and_promote, rollback
from visprompt.registry.pyfunc_model import encode_png


def _alias(name: str, alias: str) -> str:
    return MlflowClient().get_model_version_by_alias(name, alias).version


def test_champion_moves_only_when_beaten_and_rolls_back(project: Path, model_name: str) -> None:
    first = register_candidate(project, model_name, seed=1, metric=0.50)
    assert first.promoted and _alias(model_name, CHAMPION) == first.version
    # better, but not by the 0.01 margin
    worse = register_candidate(project, model_name, seed=2, metric=0.505)
    assert not worse.promoted
    assert _alias(model_name, CHAMPION) == first.version
    assert _alias(model_name, CHALLENGER) == worse.version
    better = register_candidate(project, model_name, seed=3, metric=0.70)
    assert better.promoted and _alias(model_name, CHAMPION) == better.version
    assert better.champion_before == first.version and better.champion_metric_before == 0.5
    tags = MlflowClient().get_model_version(model_name, better.version).tags
    assert tags["git_commit"] == "abc" and tags["val_top1"] == "0.7"
    assert rollback(model_name, project / "mlflow" / ".registry.lock") == first.version
    assert _alias(model_name, CHAMPION) == first.version
    again = register_candidate(project, model_name, seed=3, metric=0.70)  # the same artifact
    assert not again.promoted and again.version == better.version
    assert again.reason == f"unchanged artifact: already version {better.version}"
    assert _alias(model_name, CHAMPION) == first.version  # the rollback stands
    assert len(MlflowClient().search_model_versions(f"name='{model_name}'")) == 3
    with pytest.raises(RuntimeError, match="no previous champion"):
        rollback(model_name, project / "mlflow" / ".registry.lock")


def test_loaded_champion_predicts_like_the_method(project: Path, model_name: str) -> None:
    _, package, model = make_package(project, seed=4)
    register_candidate(project, model_name, seed=4, metric=0.6)
    images = example_images(8, seed=5)
    loaded = mlflow.pyfunc.load_model(f"models:/{model_name}@{CHAMPION}")
    answer = loaded.predict(pd.DataFrame({"image": [encode_png(i) for i in images]}))
    pre = package["preprocessing"]
    x = to_model_input(torch.from_numpy(images).permute(0, 3, 1, 2), 32, pre["mean"], pre["std"])
    with torch.no_grad():
        expected = model.eval()(x).argmax(-1).tolist()
    assert answer["label"].tolist() == expected
    assert answer["class_name"].tolist() == [package["class_names"][i] for i in expected]


def test_changed_backbone_weights_are_refused(project: Path, model_name: str) -> None:
    artifact, package, _ = make_package(project, seed=6, weights_name="vit_changed")
    with mlflow.start_run():
        register_and_promote(
            run="changed",
            artifact_dir=artifact,
            package=package,
            example_images=example_images(2),
            model_name=model_name,
            metric_name="val_top1",
            metric=0.6,
            margin=0.0,
            lineage={},
            lock_file=project / "mlflow" / ".registry.lock",
        )
    weights = project / package["backbone"]["weights_path"]
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ValueError, match="sha256"):
        mlflow.pyfunc.load_model(f"models:/{model_name}@{CHAMPION}")


def test_failure_mid_registration_keeps_the_champion(project: Path, model_name: str) -> None:
    first = register_candidate(project, model_name, seed=7, metric=0.5)
    artifact, package, _ = make_package(project, seed=8)
    (artifact / "prompt.safetensors").write_bytes(b"not a tensor file")  # breaks the smoke test
    versions_before = len(MlflowClient().search_model_versions(f"name='{model_name}'"))
    with mlflow.start_run(), pytest.raises(Exception):  # noqa: B017 - any failure must abort
        register_and_promote(
            run="broken",
            artifact_dir=artifact,
            package=package,
            example_images=example_images(2),
            model_name=model_name,
            metric_name="val_top1",
            metric=0.99,
            margin=0.0,
            lineage={},
            lock_file=project / "mlflow" / ".lock",
        )
    assert _alias(model_name, CHAMPION) == first.version
    assert len(MlflowClient().search_model_versions(f"name='{model_name}'")) == versions_before


def test_concurrent_registry_runs_leave_a_valid_best_champion(
    project: Path, model_name: str
) -> None:
    register_candidate(project, model_name, seed=9, metric=0.4)
    script = (
        "import mlflow, sys; from pathlib import Path; from registry_kit import register_candidate;"
        "mlflow.set_experiment('registry-test');"
        "register_candidate(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))"
    )
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(project), model_name, str(s), str(m)], env=env
        )
        for s, m in ((10, 0.8), (11, 0.9))
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    client = MlflowClient()
    best = client.get_model_version_by_alias(model_name, CHAMPION)
    assert best.tags["val_top1"] == "0.9" and best.tags["validation_status"] == "passed"


def test_cli_rolls_back_and_prints_the_registry_state(
    project: Path, model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = register_candidate(project, model_name, seed=12, metric=0.5)
    second = register_candidate(project, model_name, seed=13, metric=0.6)
    lock = str(project / "mlflow" / ".registry.lock")
    main(["rollback", "--name", model_name, "--lock-file", lock])
    out = capsys.readouterr().out
    assert out.startswith(f"champion of '{model_name}' is now version {first.version}")
    state = json.loads(out[out.index("{") :])
    assert state["aliases"] == {CHAMPION: first.version, CHALLENGER: second.version}
    assert state["champion_history"] == [first.version]
    assert state["versions"][str(second.version)]["run"] == "run13"
    with pytest.raises(RuntimeError, match="no previous champion"):
        main(["rollback", "--name", model_name, "--lock-file", lock])
