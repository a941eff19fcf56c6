"""Training pipeline: the per-run node, its namespaced pipeline and its artifact dataset."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
from kedro.io import DatasetError
from pipeline_kit import ENGINE, TINY_VIT, run_training

from visprompt import backbones, methods
from visprompt.pipelines.runs import configured_runs
from visprompt.pipelines.tracking import KEY_TAG
from visprompt.pipelines.training.datasets import MethodArtifactDataset
from visprompt.pipelines.training.nodes import train_run
from visprompt.pipelines.training.pipeline import run_pipeline
from visprompt.training.code_digest import code_digest
from visprompt.training.runs import RunSpec, parse_run, train_config

D, C = TINY_VIT["model_kwargs"]["embed_dim"], 4


def test_train_node_reports_counts_history_and_mlflow(trained, vit_spec, mlflow_store) -> None:
    model, summary, history = trained
    total_backbone = vit_spec["total_params"]
    assert summary["trainable_params"] == D * C + C  # the linear head only
    assert summary["total_params"] == total_backbone + D * C + C
    assert summary["method"] == "linear_probe" and summary["epochs"] == 2 == len(history)
    assert summary["val_top1"] == history[summary["best_epoch"]]["val_top1"]
    assert {"train_loss", "val_top1", "lr", "epoch_time_s"} <= set(history[0])
    # the frozen backbone is bitwise the pretrained one
    reference = backbones.from_spec(vit_spec).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.backbone.state_dict().items())
    # the hook opened the seed's run, keyed by the node's namespace and the run key
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert run.info.run_name == "lp.seed_0" and summary["seed"] == 0
    assert run.info.status == "FINISHED" and run.data.tags[KEY_TAG] == summary["run_key"]
    assert run.data.params["method"] == "linear_probe" and run.data.params["seed"] == "0"
    assert run.data.params["train.batch_size"] == "16"
    assert run.data.params["code_sha256"] == code_digest()
    assert run.data.metrics["trainable_params"] == D * C + C
    losses = mlflow.MlflowClient().get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == [0, 1]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "artifact")}
    assert artifacts == {"artifact/config.json", "artifact/prompt.safetensors"}


LP = RunSpec(name="lp", method="linear_probe", backbone="vit")


def test_train_node_refuses_failed_validation(shard_dir: Path, vit_spec: dict) -> None:
    with pytest.raises(ValueError, match="data validation failed"):
        train_run(LP, 0, {}, ENGINE, "u", str(shard_dir), {"success": False}, {"vit": vit_spec})


def test_train_node_refuses_a_summary_of_other_data(
    shard_dir: Path, shard_summary: dict, vit_spec: dict
) -> None:
    stale = {**shard_summary, "data_hash": "y"}  # e.g. a summary left from earlier data
    with pytest.raises(ValueError, match=r"data_hash y does not match the data_hash x .*dataset"):
        train_run(LP, 0, {}, ENGINE, "unused", str(shard_dir), stale, {"vit": vit_spec})


def test_train_node_names_missing_backbone_and_prompt_init(
    shard_dir: Path, shard_summary: dict, vit_spec: dict
) -> None:
    ok, specs = shard_summary, {"vit": vit_spec}
    resnet = RunSpec(name="x", method="linear_probe", backbone="resnet")
    with pytest.raises(ValueError, match="backbone 'resnet' is not in backbone_specs"):
        train_run(resnet, 0, {}, ENGINE, "u", str(shard_dir), ok, specs)
    spt = RunSpec(name="x", method="vpt", backbone="vit", prompt_init="spt_kmeans")
    with pytest.raises(ValueError, match="prompt_init 'spt_kmeans' not found"):
        train_run(spt, 0, {}, ENGINE, "u", str(shard_dir), ok, specs, {})


def test_artifact_dataset_saves_model_and_loads_path(trained, tmp_path: Path, vit_spec) -> None:
    model = trained[0]
    dataset = MethodArtifactDataset(str(tmp_path / "lp"))
    with pytest.raises(DatasetError, match="no method artifact"):
        dataset.load()
    dataset.save(model)
    path = dataset.load()
    reloaded = methods.load(path, backbones.from_spec(vit_spec))
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    assert torch.equal(reloaded.eval()(x), model(x))
    with pytest.raises(DatasetError, match="expected an AdaptedModel"):
        dataset.save(torch.nn.Linear(2, 2))


def test_another_seed_trains_its_own_model_and_checkpoints(
    trained, shard_dir: Path, shard_summary: dict, vit_spec: dict, tmp_path: Path
) -> None:
    spec = RunSpec(name="lp", method="linear_probe", backbone="vit", seeds=(0, 1))
    inputs = {
        "shards": str(shard_dir),
        "validation_summary": shard_summary,
        "backbone_specs": {"vit": vit_spec},
        "params:training.defaults": {"epochs": 2, "batch_size": 16, "lr": 0.01, "progress": False},
    }
    model, summary, history = run_training(spec, 1, tmp_path, inputs)
    assert summary["seed"] == 1 and len(history) == 2
    assert summary["run_key"] != trained[1]["run_key"]  # the seed is part of the identity
    assert not torch.equal(model.head.weight, trained[0].head.weight)  # another initial head
    folders = [p.name for p in (tmp_path / "checkpoints").iterdir()]
    assert folders == [f"lp.seed_1-{summary['run_key'][:16]}"]  # checkpoints per seed and key
    # the same seed again: its finished result and its MLflow run are reused, not repeated
    again, summary_again, history_again = run_training(spec, 1, tmp_path, inputs)
    assert summary_again == summary and history_again == history
    assert torch.equal(again.head.weight, model.head.weight)


def test_run_pipeline_is_namespaced_per_run_and_seed() -> None:
    pipe = run_pipeline(RunSpec(name="ap", method="ap", backbone="vit", seeds=(0, 7)))
    assert sorted(n.name for n in pipe.nodes) == ["ap.seed_0.train", "ap.seed_7.train"]
    assert pipe.outputs() == {
        f"ap.seed_{s}.{name}"
        for s in (0, 7)
        for name in ("artifact_dir", "train_summary", "history")
    }
    assert len(pipe.only_nodes_with_namespaces(["ap"]).nodes) == 2  # `--namespaces ap`
    assert pipe.inputs() == {
        "shards",
        "validation_summary",
        "backbone_specs",
        "params:training.defaults",
        "params:training_engine",
        "params:training.checkpoint_root",
        "params:training.hparams",
    }
    spt = run_pipeline(RunSpec(name="s", method="vpt", backbone="vit", prompt_init="k"))
    assert "prompt_inits" in spt.inputs()
    tuned = run_pipeline(RunSpec(name="ap", method="ap", backbone="vit"), hparams="tuned")
    assert tuned.inputs() - pipe.inputs() == {"tuned_hparams"}


def test_every_run_gets_training_seeds_unless_it_sets_its_own() -> None:
    params = {
        "backbone": {"build": {"vit": "m"}},
        "training": {"runs": {"a": {"method": "linear_probe", "backbone": "vit"}}},
    }
    assert configured_runs(params)["a"].seeds == (0,)  # no training.seeds: one seed
    params["training"]["seeds"] = [0, 1, 2]
    params["training"]["runs"]["c"] = {"method": "linear_probe", "backbone": "vit", "seeds": [5]}
    assert [s.seeds for s in configured_runs(params).values()] == [(0, 1, 2), (5,)]
    params["training"]["seeds"] = [1, 1]
    with pytest.raises(ValueError, match="training.seeds is \\[1, 1\\]: give a non-empty list"):
        configured_runs(params)
    params["training"]["seeds"] = [0]
    params["training"]["defaults"] = {"seed": 3}
    with pytest.raises(ValueError, match="training.defaults.seed is replaced by training.seeds"):
        configured_runs(params)


def test_configured_runs_refuse_unknown_methods_and_backbones() -> None:
    params = {
        "backbone": {"build": {"vit": "m"}},
        "training": {"runs": {"a": {"method": "linear_probe", "backbone": "vit"}}},
    }
    assert list(configured_runs(params)) == ["a"]
    params["training"]["runs"]["b"] = {"method": "not_a_method", "backbone": "vit"}
    with pytest.raises(ValueError, match="unknown method 'not_a_method'"):
        configured_runs(params)
    params["training"]["runs"]["b"] = {"method": "linear_probe", "backbone": "resnet"}
    with pytest.raises(ValueError, match="unknown backbone 'resnet'; valid: vit"):
        configured_runs(params)


@pytest.mark.parametrize(
    ("name", "entry", "message"),
    [
        ("bad-name", {"method": "ap", "backbone": "vit"}, "identifier"),
        ("a", {"method": "ap"}, "'backbone' is required"),
        ("a", {"method": "ap", "backbone": "vit", "lr": 1}, "unknown key"),
        ("a", {"method": "ap", "backbone": "vit", "seeds": []}, "runs.a.seeds\\) is \\[\\]"),
        ("a", {"method": "ap", "backbone": "vit", "seeds": "0"}, "runs.a.seeds\\) is '0'"),
        ("a", {"method": "ap", "backbone": "vit", "train": {"seed": 1}}, "set per run by `seeds"),
    ],
)
def test_parse_run_errors_name_the_field(name: str, entry: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_run(name, entry)


def test_train_config_layers_defaults_engine_and_run() -> None:
    config = train_config({"lr": 0.1, "epochs": 3}, {"lr": 0.5}, {"precision": "bf16-mixed"})
    assert (config.lr, config.epochs, config.precision) == (0.5, 3, "bf16-mixed")
    with pytest.raises(ValueError, match="unknown training option"):
        train_config({"lr": 0.1}, {"learning_rate": 1}, {})


def test_project_run_list_uses_every_available_method() -> None:
    runs = configured_runs()
    assert {spec.method for spec in runs.values()} == set(methods.available())
