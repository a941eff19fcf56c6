"""Registration, guarded promotion, rollback, failure and concurrency on a real registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from registry_kit import (
    example_images,
    make_package,
    offline_labels,
    offline_probabilities,
    register_candidate,
    register_package,
    smoke_for,
)
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer

from visprompt.methods.pgn.inversion import RGBDeployment
from visprompt.registry.__main__ import main
from visprompt.registry.integrity import encode_png
from visprompt.registry.promotion import CHALLENGER, CHAMPION, rollback

TESTS = Path(__file__).parents[1]


def _alias(name: str, alias: str) -> str:
    return MlflowClient().get_model_version_by_alias(name, alias).version


def _versions(name: str) -> list:
    return MlflowClient().search_model_versions(f"name='{name}'")


def test_champion_moves_only_when_beaten_and_rolls_back(
    project: Path, model_name: str, capfd: pytest.CaptureFixture[str]
) -> None:
    first = register_candidate(project, model_name, seed=1, metric=0.50)
    assert first.promoted and _alias(model_name, CHAMPION) == first.version
    # MLflow's "Successfully registered model ..." / "Created version ..." prints stay off
    printed = capfd.readouterr()
    assert "registered model" not in printed.err + printed.out, printed
    assert "Created version" not in printed.err + printed.out, printed
    assert mlflow.utils.logging_utils.MLFLOW_LOGGING_STREAM.enabled  # switched back on
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
    assert tags["validation_status"] == "passed" and tags["smoke_accuracy"] == "0.75"
    assert rollback(model_name) == first.version
    assert _alias(model_name, CHAMPION) == first.version
    again = register_candidate(project, model_name, seed=3, metric=0.70)  # the same artifact
    assert not again.promoted and again.version == better.version
    assert again.reason == f"unchanged artifact: already version {better.version}"
    assert _alias(model_name, CHAMPION) == first.version  # the rollback stands
    assert len(_versions(model_name)) == 3
    with pytest.raises(RuntimeError, match="no previous champion"):
        rollback(model_name)


def test_loaded_champion_predicts_like_the_method(project: Path, model_name: str) -> None:
    artifact, package, model = make_package(project, seed=4)
    # fewer images per request than the 12 smoke images: verification must send them in
    # requests within the limit, as a client would (it sent all at once, refusing every
    # version whose validation split was larger than registry.serving.max_images)
    package["serving"]["max_images"] = 8
    register_package(project, model_name, artifact, package, smoke_for(model, package), 0.6)
    images = example_images(8, seed=5)
    loaded = mlflow.pyfunc.load_model(f"models:/{model_name}@{CHAMPION}")
    answer = loaded.predict(pd.DataFrame({"image": [encode_png(i) for i in images]}))
    expected = offline_labels(model, package, images).tolist()
    assert answer["label"].tolist() == expected
    assert answer["class_name"].tolist() == [package["class_names"][i] for i in expected]
    probabilities = list(answer["probabilities"])
    assert all(len(p) == 5 and abs(sum(p) - 1) < 1e-6 for p in probabilities)


def test_a_pgn_version_serves_its_rgb_deployment_in_front_of_the_unmodified_vit(
    project: Path, model_name: str
) -> None:
    artifact, package, model = make_package(
        project, 19, "vit_p8", "pgn", "vit_p8", num_prompts=4, library_size=16, width=4
    )
    package["pgn_serving"] = "rgb"
    register_package(project, model_name, artifact, package, smoke_for(model, package), 0.6)
    loaded = mlflow.pyfunc.load_model(f"models:/{model_name}@{CHAMPION}")
    served = loaded.unwrap_python_model().model
    assert isinstance(served, RGBDeployment)
    vit = served.server.backbone  # a stock timm ViT set to the image + one row of 8-px patches
    assert type(vit) is VisionTransformer and tuple(vit.patch_embed.img_size) == (40, 32)
    images = example_images(16, seed=20)
    answer = loaded.predict(pd.DataFrame({"image": [encode_png(i) for i in images]}))
    token = offline_probabilities(model, package, images)  # PGN's token path
    agreement = float(np.mean(answer["label"].to_numpy() == token.argmax(-1)))
    assert agreement == 1.0
    np.testing.assert_allclose(np.stack(answer["probabilities"]), token, atol=1e-4)


def test_a_corrupted_candidate_fails_its_smoke_test_and_is_not_registered(
    project: Path, model_name: str
) -> None:
    first = register_candidate(project, model_name, seed=7, metric=0.5)
    artifact, package, model = make_package(project, seed=8)
    smoke = smoke_for(model, package)  # recorded from the validated model
    # the saved head is negated after validation: every file still parses, labels stay in
    # range, only the predictions are wrong
    tensors = load_file(str(artifact / "prompt.safetensors"))
    negated = {k: -v if k.startswith("head") else v for k, v in tensors.items()}
    save_file(negated, str(artifact / "prompt.safetensors"))
    versions_before = len(_versions(model_name))
    with pytest.raises(RuntimeError, match=r"smoke accuracy 0\.\d+ on 12 .* recorded 0\.7500"):
        register_package(project, model_name, artifact, package, smoke, metric=0.99)
    assert _alias(model_name, CHAMPION) == first.version
    assert len(_versions(model_name)) == versions_before


def test_an_unreadable_artifact_is_cleanly_undone(project: Path, model_name: str) -> None:
    first = register_candidate(project, model_name, seed=9, metric=0.5)
    artifact, package, model = make_package(project, seed=10)
    smoke = smoke_for(model, package)
    (artifact / "prompt.safetensors").write_bytes(b"not a tensor file")
    versions_before = len(_versions(model_name))
    with pytest.raises(RuntimeError, match="does not load"):
        register_package(project, model_name, artifact, package, smoke, metric=0.99)
    assert _alias(model_name, CHAMPION) == first.version
    assert len(_versions(model_name)) == versions_before


def _in_subprocess(script: str, *args: str) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    prelude = (
        "import mlflow, sys; from pathlib import Path; mlflow.set_experiment('registry-test');"
    )
    return subprocess.Popen([sys.executable, "-c", prelude + script, *args], env=env)


@pytest.mark.slow
def test_concurrent_registry_runs_make_one_version_per_artifact_and_the_best_champion(
    project: Path, model_name: str
) -> None:
    register_candidate(project, model_name, seed=11, metric=0.4)
    script = (
        "from registry_kit import register_candidate;"
        "register_candidate(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))"
    )
    procs = [  # two runs of the same artifact (seed 13) and a weaker one
        _in_subprocess(script, str(project), model_name, str(s), str(m))
        for s, m in ((12, 0.8), (13, 0.9), (13, 0.9))
    ]
    assert [p.wait(timeout=600) for p in procs] == [0, 0, 0]
    versions = _versions(model_name)
    assert sorted(v.tags["run"] for v in versions) == ["run11", "run12", "run13"]
    assert {v.tags["validation_status"] for v in versions} == {"passed"}
    best = MlflowClient().get_model_version_by_alias(model_name, CHAMPION)
    assert best.tags["val_top1"] == "0.9"


def test_a_registration_killed_after_register_model_is_completed_on_rerun(
    project: Path, model_name: str
) -> None:
    first = register_candidate(project, model_name, seed=15, metric=0.5)
    script = (
        "import os, signal; from visprompt.registry import promotion;"
        "register = promotion.mlflow.register_model;"
        "promotion.mlflow.register_model = lambda *a, **k: "
        "(register(*a, **k), os.kill(os.getpid(), signal.SIGKILL));"
        "from registry_kit import register_candidate;"
        "register_candidate(Path(sys.argv[1]), sys.argv[2], 16, 0.8)"
    )
    killed = _in_subprocess(script, str(project), model_name)
    assert killed.wait(timeout=300) == -9
    pending = [v for v in _versions(model_name) if v.version != first.version]
    assert [v.tags["validation_status"] for v in pending] == ["pending"]
    assert _alias(model_name, CHAMPION) == first.version  # never without its champion
    rerun = register_candidate(project, model_name, seed=16, metric=0.8)
    assert rerun.version == pending[0].version and rerun.promoted
    assert rerun.reason.startswith("completed an interrupted registration")
    assert _alias(model_name, CHAMPION) == rerun.version
    assert len(_versions(model_name)) == 2
    tags = MlflowClient().get_model_version(model_name, rerun.version).tags
    assert tags["validation_status"] == "passed"


def test_cli_rolls_back_and_prints_the_registry_state(
    project: Path, model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = register_candidate(project, model_name, seed=17, metric=0.5)
    second = register_candidate(project, model_name, seed=18, metric=0.6)
    main(["rollback", "--name", model_name])
    out = capsys.readouterr().out
    assert f"champion of '{model_name}' is now version {first.version}" in out
    # a short table by default: a header line, the column names, one row per version
    table = out.splitlines()[1:]
    assert table[0].startswith(f"{model_name}: champion v{first.version}, history [")
    assert table[1].split()[:3] == ["version", "run", "method"] and len(table) == 4
    assert table[2].split() == [f"v{first.version}", "run17", "linear_probe", "0.5000"] + [
        "0.7500",
        "passed",
        "champion",
    ]
    assert table[3].split()[-2:] == ["passed", "challenger"]
    main(["status", "--name", model_name, "--json"])
    out = capsys.readouterr().out
    state = json.loads(out)
    assert state["aliases"] == {CHAMPION: first.version, CHALLENGER: second.version}
    assert state["champion_history"] == [first.version]
    assert state["versions"][str(second.version)]["run"] == "run18"
    with pytest.raises(RuntimeError, match="no previous champion"):
        main(["rollback", "--name", model_name])
