"""Backbone pipeline: weights from the hub code path, a local file, or local pretraining."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import timm
import torch
import yaml
from pipeline_kit import ENGINE, ROOT, TINY_PRETRAIN, TINY_VIT
from safetensors.torch import save_file

from visprompt import backbones
from visprompt.pipelines.backbone.nodes import build_backbones
from visprompt.weights import materialise
from visprompt.weights.ship import ship
from visprompt.weights.sources import provenance_path


def reference_model() -> torch.nn.Module:
    torch.manual_seed(123)
    return timm.create_model(TINY_VIT["name"], **TINY_VIT["model_kwargs"])


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_file_source_roundtrips_and_records_sha(tmp_path: Path, suffix: str) -> None:
    ref = reference_model()
    weights = tmp_path / f"ref{suffix}"
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    if suffix == ".pt":
        torch.save({"state_dict": state}, weights)
    else:
        save_file(state, str(weights))
    entry = TINY_VIT | {"weights": ["file"], "file": str(weights)}
    spec = materialise("vit", entry, TINY_PRETRAIN, ENGINE, tmp_path / "out", tmp_path / "ck")
    assert spec["source"] == "file" and spec["origin"] == str(weights)
    assert spec["sha256"] == backbones.sha256_file(spec["weights_path"])
    assert spec["data_config"]["input_size"] == [3, 32, 32]  # image_size, not timm's 224
    assert spec["num_source_classes"] == 4
    assert_same_state(backbones.from_spec(spec), ref)
    # a changed weights file is refused, naming the file and the fix
    Path(spec["weights_path"]).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="dvc pull"):
        backbones.from_spec(spec)


def test_hub_source_loads_through_timm_pretrained_path(tmp_path: Path) -> None:
    """timm's own pretrained loader (pretrained=True) reading a local file via the cfg overlay."""
    ref = reference_model()
    weights = tmp_path / "hub_copy.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(weights))
    # num_classes in the overlay: timm keeps a pretrained head only when the counts agree
    overlay = {"file": str(weights), "num_classes": 4}
    entry = TINY_VIT | {"weights": ["hub"], "pretrained_cfg_overlay": overlay}
    spec = materialise("vit", entry, TINY_PRETRAIN, ENGINE, tmp_path / "out", tmp_path / "ck")
    assert spec["source"] == "hub"
    assert_same_state(backbones.from_spec(spec), ref)


def test_unavailable_sources_fall_through_then_fail_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub is unreachable, as offline
    ref = reference_model()
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(weights))
    entry = TINY_VIT | {"weights": ["hub", "file"], "file": str(weights)}
    with caplog.at_level(logging.INFO, logger="visprompt"):
        spec = materialise("vit", entry, TINY_PRETRAIN, ENGINE, tmp_path / "out", tmp_path / "ck")
    assert spec["source"] == "file"
    # an expected fallback: one INFO line saying what happens next, no warning
    fallback = [r for r in caplog.records if "source hub unavailable" in r.getMessage()]
    assert [r.levelname for r in fallback] == ["INFO"]
    assert fallback[0].getMessage().endswith("; using the next source, file")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    entry = TINY_VIT | {"weights": ["hub", "file"], "file": str(tmp_path / "missing.pt")}
    with pytest.raises(RuntimeError, match=r"hub: .*file: no local weights file"):
        materialise("vit", entry, TINY_PRETRAIN, ENGINE, tmp_path / "out", tmp_path / "ck")


def test_pretraining_learns_keeps_source_head_and_resumes(tmp_path: Path, vit_spec: dict) -> None:
    assert vit_spec["source"] == "pretrain"
    assert vit_spec["num_source_classes"] == TINY_PRETRAIN["num_classes"]
    assert vit_spec["pretrain"]["train_images"] == 36
    trained = backbones.from_spec(vit_spec)
    torch.manual_seed(TINY_PRETRAIN["train"].get("seed", 0))
    initial = timm.create_model(TINY_VIT["name"], **TINY_VIT["model_kwargs"])
    changed = [
        k for k, v in initial.state_dict().items() if not torch.equal(v, trained.state_dict()[k])
    ]
    assert "head.weight" in changed and "blocks.0.attn.qkv.weight" in changed
    # same config again: the finished checkpoint is reused (same weights, no retraining)
    out = Path(vit_spec["weights_path"]).parent
    entry = TINY_VIT | {"weights": ["pretrain"]}
    start = time.perf_counter()
    again = materialise("vit", entry, TINY_PRETRAIN, ENGINE, out, out.parent / "ckpt")
    assert again["sha256"] == vit_spec["sha256"]
    assert time.perf_counter() - start < vit_spec["pretrain"]["train_time_s"] + 5


def test_shipped_pretrained_weights_load_with_their_provenance(
    tmp_path: Path, vit_spec: dict
) -> None:
    """`make pretrain-vit`'s shipping: the file source then serves the same bytes and credits
    the pretraining (origin, source accuracy); a swapped file is refused, not mis-credited."""
    shipped = ship(vit_spec, tmp_path / "w" / "vit.safetensors", {"seed": 0})
    record = json.loads(provenance_path(shipped).read_text())
    assert record["sha256"] == vit_spec["sha256"] and record["recipe"] == {"seed": 0}
    assert "CPU capability" in record["machine"]
    entry = TINY_VIT | {"weights": ["file", "pretrain"], "file": str(shipped)}
    spec = materialise("vit", entry, TINY_PRETRAIN, ENGINE, tmp_path / "out", tmp_path / "ck")
    assert spec["source"] == "file" and spec["sha256"] == vit_spec["sha256"]
    assert spec["origin"] == f"{vit_spec['origin']} via {shipped}"
    assert spec["pretrain"] == vit_spec["pretrain"]
    assert not (tmp_path / "ck").exists()  # loaded, not pretrained again
    save_file({k: v.contiguous() for k, v in reference_model().state_dict().items()}, shipped)
    with pytest.raises(ValueError, match=r"differs from the sha256 .*git checkout"):
        materialise("vit", entry, TINY_PRETRAIN, ENGINE, tmp_path / "out2", tmp_path / "ck")
    with pytest.raises(ValueError, match="only pretrained weights are shipped"):
        ship(spec, tmp_path / "again.safetensors", {})


@pytest.mark.parametrize(
    ("key", "model", "head"), [("vit", "vit_fmnist", 10), ("vit_mae", "vit_fmnist_mae", 0)]
)
def test_the_project_ships_the_fashion_mnist_vits_it_configures(
    tmp_path: Path, key: str, model: str, head: int
) -> None:
    """The committed ViT files match their records and the configured architecture; the
    supervised one keeps its 10-class source head (vp_ilm maps it), the MAE one has none."""
    params = yaml.safe_load((ROOT / "conf/base/parameters_backbone.yml").read_text())["backbone"]
    assert params["build"]["vit"] == "vit_fmnist" and "vit_mae" not in params["build"]
    entry = params["models"][model]
    entry = entry | {"weights": ["file"], "file": str(ROOT / entry["file"])}
    spec = materialise(key, entry, params["pretrain"], ENGINE, tmp_path / "out", tmp_path / "ck")
    record = json.loads(provenance_path(Path(entry["file"])).read_text())
    assert spec["architecture"] == record["architecture"] == "vit_p8_d96_l4_h3_32px"
    assert spec["num_source_classes"] == head
    assert record["origin"].startswith("pretrain:") and "fashion-mnist" in record["origin"]
    figures = spec["pretrain"]
    assert figures["train_images"] == 54_000 and figures["val_images"] == 6_000
    assert len(figures["probe_val_top1"]) == 3  # a linear probe over 3 seeds
    assert min(figures["probe_val_top1"]) > 0.7  # 10 classes: chance is 0.1
    if head:
        assert figures["best_val_top1"] > 0.65
    else:
        assert 0 < figures["val_reconstruction_loss"] < 1  # normalised pixels: 1 = the mean


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ('{"sha256": "ab", "orig', "not valid JSON"),
        ('{"sha256": "ab"}', "lacks origin"),
        ("[]", "lacks sha256, origin"),
    ],
)
def test_a_broken_provenance_record_names_the_file_and_the_fix(
    tmp_path: Path, record: str, message: str
) -> None:
    weights = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in reference_model().state_dict().items()}, weights)
    provenance_path(weights).write_text(record)
    entry = TINY_VIT | {"weights": ["file"], "file": str(weights)}
    with pytest.raises(ValueError) as caught:
        materialise("vit", entry, TINY_PRETRAIN, ENGINE, tmp_path / "out", tmp_path / "ck")
    text = str(caught.value)
    assert str(provenance_path(weights)) in text and message in text
    assert "git checkout --" in text and "make pretrain-vit" in text


def test_pretraining_needs_a_matching_head(tmp_path: Path) -> None:
    entry = TINY_VIT | {"weights": ["pretrain"]}
    settings = TINY_PRETRAIN | {"num_classes": 3}
    with pytest.raises(ValueError, match="model_kwargs.num_classes: 3"):
        materialise("vit", entry, settings, ENGINE, tmp_path / "out", tmp_path / "ck")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"build": {"vit": "nope"}, "models": {}}, "not in backbone.models"),
        ({"build": {"vit": "m"}, "models": {"m": {"name": "x", "weights": ["web"]}}}, "weights"),
        ({"build": {"vit": "m"}, "models": {"m": {"name": "x", "weight": ["hub"]}}}, "unknown key"),
        ({"build": {}, "models": {}}, "backbone.build is empty"),
    ],
)
def test_bad_backbone_config_is_a_clear_error(
    params: dict, message: str, mlflow_store: str
) -> None:
    params = params | {
        "pretrain": TINY_PRETRAIN,
        "output_dir": "unused",
        "checkpoint_root": "unused",
    }
    with pytest.raises(ValueError, match=message):
        build_backbones(params, ENGINE)


def test_package_source_through_the_node_logs_config_and_what_was_loaded(
    tmp_path: Path, mlflow_store: str
) -> None:
    import mlflow

    from visprompt.weights import PACKAGED

    params = {
        "build": {"cnn": "lite0"},
        "models": {
            "lite0": {
                "name": "tf_efficientnet_lite0",
                "image_size": 64,
                "weights": ["package"],
                "package": PACKAGED["tf_efficientnet_lite0"],
            }
        },
        "pretrain": TINY_PRETRAIN,
        "output_dir": str(tmp_path / "out"),
        "checkpoint_root": str(tmp_path / "ck"),
    }
    with mlflow.start_run() as parent:
        spec = build_backbones(params, ENGINE)["cnn"]
    assert spec["package"]["version"] == "0.1.0" and spec["architecture"] == "tf_efficientnet_lite0"
    child = mlflow.search_runs(
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'", output_format="list"
    )[0]
    logged = child.data.params
    assert logged["loaded.version"] == "0.1.0" and logged["architecture"] == spec["architecture"]
    assert logged["loaded.file"].endswith("models/efficientnet-lite0-57934424.pth")
