"""registry pipeline: lineage-tagged versions, guarded promotion, and a champion that a fresh
process loads by alias and that labels the test split exactly as the evaluation does."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file, save_file

from visprompt.data.shards import ShardDataset, read_split
from visprompt.evaluation.calibration import fit_ood
from visprompt.pipelines import experiment
from visprompt.pipelines.registry.nodes import register_runs
from visprompt.pipelines.registry.pipeline import create_pipeline
from visprompt.pipelines.runs import command_parameters, configured_runs
from visprompt.pipelines.training.datasets import MethodArtifactDataset
from visprompt.registry.integrity import encode_png
from visprompt.registry.packaging import build_package, select_candidate, smoke_set
from visprompt.registry.promotion import CHALLENGER, CHAMPION
from visprompt.training import Preprocess, predict
from visprompt.training.runs import parse_run

NAME = "registry-pipeline-test"
#: A seed's test metrics as far as the registry reads them: the calibration fitted on val
#: (a detector of 4 classes from fixed logits; temperature 2).
CALIBRATED = {
    "temperature": 2.0,
    "ood": fit_ood(
        torch.eye(4).repeat(5, 1) * 3 + 0.1 * torch.arange(20.0)[:, None], torch.arange(20) % 4
    ),
}
TRAINING = {
    "defaults": {"epochs": 2},
    "runs": {"lp": {"method": "linear_probe", "backbone": "vit"}, "lp_low": {"method": "x"}},
}


@pytest.fixture(scope="module")
def registered(trained, vit_spec, shard_dir, tmp_path_factory, mlflow_store):
    """Two runs through the node: `lp` (its real metric) and `lp_low` (same artifact, worse)."""
    model, summary, _ = trained
    artifacts = tmp_path_factory.mktemp("artifacts")
    dataset = MethodArtifactDataset(str(artifacts / "lp"))
    dataset.save(model)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.head.bias.add_(1.0)
    low_dataset = MethodArtifactDataset(str(artifacts / "lp_low"))
    low_dataset.save(other)
    params = {
        "metric": "best_val_top1",
        "margin": 0.0,
        "smoke": {"max_images": 64, "tolerance": 0.01},
        # fewer images per request than the smoke set: verification must batch like a client
        "serving": {"max_images": 16},
    }
    low = summary | {"best_val_top1": summary["best_val_top1"] - 0.1}
    inputs = (
        {"model": NAME, "layout": [("lp", 0), ("lp_low", 0)]},
        str(shard_dir),
        {"success": True, "data_hash": "md5-of-data"},
        {"vit": vit_spec},
        TRAINING,
        params,
        dataset.load(),
        summary,
        CALIBRATED | {"top1": 0.8},
        low_dataset.load(),
        low,
        CALIBRATED | {"top1": 0.7},
    )
    with mlflow.start_run(tags={"run_id": "kedro-session-1"}) as parent:  # as kedro-mlflow tags
        result = register_runs(*inputs)
    with mlflow.start_run(tags={"run_id": "kedro-session-2"}):
        rerun = register_runs(*inputs)
    return result, parent.info.run_id, rerun


def test_first_run_is_champion_worse_one_only_challenger(registered) -> None:
    summary, _, _ = registered
    first, second = summary["decisions"]
    assert first["promoted"] and first["reason"] == "first champion"
    assert not second["promoted"] and second["champion_before"] == first["version"]
    client = MlflowClient()
    assert client.get_model_version_by_alias(NAME, CHAMPION).version == first["version"]
    assert client.get_model_version_by_alias(NAME, CHALLENGER).version == second["version"]
    assert summary["champion"] == first["version"]
    json.dumps(summary)  # the registry.json dataset must be able to write it
    served = mlflow.pyfunc.load_model(f"models:/{NAME}@{CHAMPION}").unwrap_python_model()
    assert served.calibration == CALIBRATED  # from test_metrics


def test_rerun_with_unchanged_artifacts_registers_nothing(registered) -> None:
    summary, _, rerun = registered
    versions = [d["version"] for d in summary["decisions"]]
    assert [d["version"] for d in rerun["decisions"]] == versions
    assert [d["promoted"] for d in rerun["decisions"]] == [False, False]
    assert rerun["decisions"][0]["reason"].startswith("unchanged artifact")
    assert len(MlflowClient().search_model_versions(f"name='{NAME}'")) == 2
    assert rerun["champion"] == summary["champion"]


def test_versions_carry_their_lineage(registered, trained) -> None:
    summary, parent_id, _ = registered
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    tags = [MlflowClient().get_model_version(NAME, d["version"]).tags for d in summary["decisions"]]
    for tag in tags:
        assert tag["git_commit"].startswith(head.strip())
        assert tag["data_hash"] == "md5-of-data"
        assert tag["kedro_run_id"] == "kedro-session-1"
        assert tag["training_mlflow_run_id"] == trained[1]["mlflow_run_id"]
        run = mlflow.get_run(tag["mlflow_run_id"])  # the version's own nested run
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        # the run identity of the trained seed (both runs here register the same training)
        assert tag["params_hash"] == trained[1]["run_key"] and len(tag["params_hash"]) == 64
    assert float(tags[0]["best_val_top1"]) == trained[1]["best_val_top1"]  # full precision
    description = MlflowClient().get_model_version(NAME, summary["decisions"][0]["version"])
    assert description.description == (
        f"run lp; method linear_probe; backbone vit; data md5-of-data; test top-1 80.0 % "
        f"(1 seed); {trained[1]['trainable_params']:,} trainable params"
    )
    assert (tags[0]["seed"], tags[0]["n_seeds"]) == ("0", "1")
    assert float(tags[0]["best_val_top1_seed_mean"]) == trained[1]["best_val_top1"]


def test_candidate_is_the_seed_closest_to_the_validation_mean() -> None:
    summaries = {0: {"val": 0.70}, 1: {"val": 0.90}, 2: {"val": 0.78}, 3: {"val": 0.62}}
    seed, mean = select_candidate("vp", summaries, "val")
    assert mean == pytest.approx(0.75) and seed == 2  # |0.78 - 0.75| is the smallest gap
    assert select_candidate("vp", {5: {"val": 0.4}, 1: {"val": 0.6}}, "val") == (1, 0.5)  # tie
    with pytest.raises(ValueError, match="vp.seed_0.train_summary has no 'f1'"):
        select_candidate("vp", summaries, "f1")


def test_champion_in_a_fresh_process_labels_the_test_split_like_evaluation(
    registered, trained, vit_spec, shard_dir, mlflow_store, tmp_path
) -> None:
    logits, _ = predict(
        trained[0],
        ShardDataset(shard_dir, "test"),
        Preprocess.from_data_config(vit_spec["data_config"]),
        batch_size=7,
    )
    images, _ = read_split(shard_dir, "test")
    request = tmp_path / "request.json"
    request.write_text(json.dumps([encode_png(image) for image in images]))
    script = (
        "import json, sys, mlflow, pandas as pd;"
        f"m = mlflow.pyfunc.load_model('models:/{NAME}@{CHAMPION}');"
        "frame = pd.DataFrame({'image': json.load(open(sys.argv[1]))});"
        "print(json.dumps(m.predict(frame)['label'].tolist()))"
    )
    env = os.environ | {"MLFLOW_TRACKING_URI": mlflow_store}
    done = subprocess.run(
        [sys.executable, "-c", script, str(request)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    labels = json.loads(done.stdout.strip().splitlines()[-1])
    assert labels == logits.argmax(-1).tolist()
    assert len(labels) == len(images) == 16


def test_unknown_runs_and_metrics_are_refused(vit_spec, shard_dir, trained) -> None:
    runs = {
        n: parse_run(n, {"method": "vp", "backbone": "vit"}, (0, 1)) for n in ("lp", "vp", "ap")
    }
    with pytest.raises(ValueError, match="registry.runs names 'nope'"):
        experiment.layout({"registry": {"runs": ["vp", "nope"]}}, runs, "registry.runs")
    chosen = experiment.layout({"registry": {"runs": "ap,lp"}}, runs, "registry.runs")
    assert chosen == [("lp", 0), ("lp", 1), ("ap", 0), ("ap", 1)]  # configuration order
    assert experiment.layout({"registry": {"runs": None}}, runs, "registry.runs")[-1] == ("ap", 1)
    params = {"metric": "val_f1", "margin": 0, "smoke": {}}
    target = {"model": NAME, "layout": [("lp", 0)]}
    with pytest.raises(ValueError, match="has no 'val_f1'"):
        register_runs(
            target,
            str(shard_dir),
            {},
            {"vit": vit_spec},
            TRAINING,
            params,
            "x",
            {},
            CALIBRATED | {"top1": 0},
        )


def test_an_unknown_pgn_serving_is_refused_naming_the_setting() -> None:
    with pytest.raises(
        ValueError, match=r"registry\.pgn_serving must be one of \['rgb', 'token'\]"
    ):
        build_package({}, ["a", "b"], 32, None, "pixels")


def test_pipeline_takes_every_configured_runs_artifact() -> None:
    pipe = create_pipeline()
    inputs = pipe.inputs()
    assert {"shards", "validation_summary", "backbone_specs", "params:registry"} <= inputs
    assert "linear_probe.seed_0.artifact_dir" in inputs and "vp.seed_2.train_summary" in inputs
    assert pipe.outputs() == {"digits.registry_summary"}  # the experiment's (embedded default)
    (node,) = pipe.nodes
    assert node.name == "digits.register_runs"


def _pipeline_for(monkeypatch: pytest.MonkeyPatch, **runtime: object):
    """The registry pipeline of the project's parameters with these `--params`."""
    params = command_parameters(runtime_params=runtime)
    monkeypatch.setattr("visprompt.pipelines.registry.pipeline.project_parameters", lambda: params)
    runs = configured_runs(params)
    monkeypatch.setattr("visprompt.pipelines.registry.pipeline.configured_runs", lambda: runs)
    return create_pipeline()


def test_a_namespace_subset_registers_only_its_runs(monkeypatch) -> None:
    """`kedro run --namespaces vp,ap_vit` sets experiment.runs: the champion is picked among
    vp's and ap_vit's candidates only, every seed of each an input."""
    pipe = _pipeline_for(monkeypatch, experiment={"runs": "vp ap_vit"})
    (node,) = pipe.nodes
    runs = {name.split(".")[0] for name in node.inputs if ".seed_" in name}
    assert runs == {"vp", "ap_vit"}
    assert {f"vp.seed_{s}.artifact_dir" for s in (0, 1, 2)} <= set(node.inputs)


def test_two_experiments_register_two_models(monkeypatch) -> None:
    default = _pipeline_for(monkeypatch)
    fashion = _pipeline_for(monkeypatch, experiment={"name": "fashion_mnist"})
    assert default.outputs() == {"digits.registry_summary"}
    assert fashion.outputs() == {"fashion_mnist.registry_summary"}
    models = {
        experiment.registered_model(command_parameters(runtime_params=r))
        for r in ({}, {"experiment": {"name": "fashion_mnist"}})
    }
    assert models == {"digits", "fashion_mnist"}
    named = command_parameters(runtime_params={"registry": {"model_name": "mine"}})
    assert experiment.registered_model(named) == "mine"


def test_versions_record_the_smoke_set_and_the_stored_image_size(registered, shard_dir) -> None:
    summary, _, _ = registered
    version = summary["decisions"][0]["version"]
    uri = f"models:/{NAME}/{version}/artifacts/package/package.json"
    package = json.loads(Path(mlflow.artifacts.download_artifacts(uri)).read_text())
    images, _ = read_split(shard_dir, "val")
    assert package["smoke"]["num_images"] == len(images)
    assert package["preprocessing"]["stored_size"] == images.shape[1]
    assert package["backbone"]["source"] == "mlflow"
    assert package["backbone"]["weights_uri"].startswith("runs:/")
    assert "weights_path" not in package["backbone"] and "project_root" not in package


def test_a_smoke_subset_widens_the_tolerance_by_its_sampling_error() -> None:
    images = np.zeros((1000, 4, 4, 3), np.uint8)
    labels = np.arange(1000) % 10
    whole = smoke_set(images, labels, 0.9, {"max_images": None, "tolerance": 0.01})
    assert len(whole.labels) == 1000 and whole.tolerance == 0.01
    part = smoke_set(images, labels, 0.9, {"max_images": 100, "tolerance": 0.01})
    assert len(part.labels) == 100 and len(set(part.labels.tolist())) == 10
    assert part.tolerance == pytest.approx(3 * math.sqrt(0.9 * 0.1 / 100))


def test_a_candidate_failing_its_smoke_test_is_refused_and_the_others_register(
    trained, vit_spec, shard_dir, tmp_path, mlflow_store
) -> None:
    model, summary, _ = trained
    good = MethodArtifactDataset(str(tmp_path / "good"))
    good.save(model)
    broken = MethodArtifactDataset(str(tmp_path / "broken"))
    broken.save(model)
    weights = next((tmp_path / "broken").rglob("*.safetensors"))
    tensors = load_file(str(weights))  # the head negated after validation: wrong predictions
    save_file({k: -v if k.startswith("head") else v for k, v in tensors.items()}, str(weights))
    params = {"metric": "best_val_top1", "margin": 0.0}
    training = {"defaults": {}, "runs": {"bad": {"method": "x"}, "ok": {"method": "y"}}}
    with mlflow.start_run():
        result = register_runs(
            {"model": f"{NAME}-refusal", "layout": [("bad", 0), ("ok", 0)]},
            str(shard_dir),
            {"data_hash": "h"},
            {"vit": vit_spec},
            training,
            params | {"smoke": {"max_images": 64, "tolerance": 0.01}},
            broken.load(),
            summary | {"best_val_top1": 0.99},
            CALIBRATED | {"top1": 0.9},
            good.load(),
            summary,
            CALIBRATED | {"top1": 0.8},
        )
    bad, ok = result["decisions"]
    assert bad["version"] is None and bad["reason"].startswith("refused: ")
    assert "does not reproduce the recorded" in bad["reason"]
    assert ok["promoted"] and result["champion"] == ok["version"]
    assert len(MlflowClient().search_model_versions(f"name='{NAME}-refusal'")) == 1
