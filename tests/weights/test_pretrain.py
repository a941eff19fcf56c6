"""Local pretraining: Fashion-MNIST-style idx source, the MAE objective, the linear probe."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY_VIT_SPEC

from visprompt import backbones
from visprompt.training import Preprocess
from visprompt.weights import materialise
from visprompt.weights.mae import MaeConfig, MaskedAutoencoder
from visprompt.weights.pretrain import idx_splits, linear_probe

HEADLESS = TINY_VIT_SPEC | {"model_kwargs": TINY_VIT_SPEC["model_kwargs"] | {"num_classes": 0}}
ENGINE = {"accelerator": "cpu", "devices": 1, "precision": "32-true"}
MAE = MaeConfig(epochs=1, batch_size=8, lr=1e-3, weight_decay=0.05, warmup_epochs=0, min_lr=0,
                seed=0)  # fmt: skip


def write_idx(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """The two train-split idx files (gzip), as Debian's dataset-fashion-mnist ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + images.astype(np.uint8).tobytes())
    header = bytes([0, 0, 8, 1]) + len(labels).to_bytes(4, "big")
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(header + labels.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 28x28 grey images of 4 classes, each class a bright band at its own rows."""
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 4
    images = rng.integers(0, 40, size=(200, 28, 28))
    for i, label in enumerate(labels):
        images[i, 7 * label : 7 * label + 7] = 220
    root = tmp_path_factory.mktemp("fmnist")
    write_idx(root, images, labels)
    return root


def test_idx_splits_read_the_train_split_as_rgb_with_a_seeded_val(idx_root: Path) -> None:
    train, val = idx_splits(str(idx_root), seed=0, val_fraction=0.25)
    assert train.tensors[0].shape == (150, 3, 28, 28) and val.tensors[0].shape == (50, 3, 28, 28)
    assert train.tensors[0].dtype == torch.uint8
    assert torch.equal(train.tensors[0][:, 0], train.tensors[0][:, 2])  # grey in 3 channels
    again, _ = idx_splits(str(idx_root), seed=0, val_fraction=0.25)
    other, _ = idx_splits(str(idx_root), seed=1, val_fraction=0.25)
    assert torch.equal(again.tensors[1], train.tensors[1])
    assert not torch.equal(other.tensors[1], train.tensors[1])
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        idx_splits(str(idx_root / "nowhere"), seed=0, val_fraction=0.25)


def test_mae_masks_three_quarters_and_scores_only_hidden_patches() -> None:
    torch.manual_seed(0)
    encoder = backbones.create_backbone(HEADLESS["name"], **HEADLESS["model_kwargs"])
    mae = MaskedAutoencoder(encoder, MAE)
    images = torch.randn(3, 3, 32, 32)
    # patchify is the patch embedding's grid: patch k is rows/cols (k // 4, k % 4) of 8 px
    patches = mae.patchify(images)
    assert patches.shape == (3, 16, 8 * 8 * 3)
    assert torch.equal(patches[1, 6].view(8, 8, 3).permute(2, 0, 1), images[1, :, 8:16, 16:24])
    tokens, restore, mask = mae.encode(images, torch.Generator().manual_seed(0))
    assert tokens.shape == (3, 1 + 4, 32)  # CLS + 25 % of 16 patches
    assert mask.sum(1).tolist() == [12.0, 12.0, 12.0]
    # the loss has no gradient through the predictions of the visible patches
    pred = mae.decode(tokens, restore).detach().requires_grad_(True)
    target = mae.patchify(images)
    ((pred - target).pow(2).mean(-1) * mask).sum().div(mask.sum()).backward()
    assert bool((pred.grad.abs().sum(-1)[mask == 0] == 0).all())
    assert bool((pred.grad.abs().sum(-1)[mask == 1] > 0).all())


def test_mae_pretraining_trains_a_headless_encoder_and_reports_its_figures(
    idx_root: Path, tmp_path: Path
) -> None:
    settings = {
        "source": "idx",
        "root": str(idx_root),
        "objective": "mae",
        "val_fraction": 0.25,
        "probe_seeds": [0, 1],
        "mae": {"decoder_dim": 16, "decoder_heads": 2, "decoder_depth": 1},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.001, "progress": False},
    }
    entry = HEADLESS | {"weights": ["pretrain"]}
    spec = materialise("vit_mae", entry, settings, ENGINE, tmp_path / "out", tmp_path / "ck")
    assert spec["num_source_classes"] == 0 and spec["source"] == "pretrain"
    assert spec["origin"].startswith(f"pretrain:mae:idx({idx_root}")
    figures = spec["pretrain"]
    assert figures["train_images"] == 150 and figures["val_images"] == 50
    assert figures["val_reconstruction_loss"] > 0 and figures["epochs_run"] == 2
    assert len(figures["probe_val_top1"]) == 2 and figures["probe_seeds"] == [0, 1]
    torch.manual_seed(0)
    initial = backbones.create_backbone(HEADLESS["name"], **HEADLESS["model_kwargs"])
    trained = backbones.from_spec(spec)
    assert not torch.equal(initial.blocks[0].attn.qkv.weight, trained.blocks[0].attn.qkv.weight)
    assert "head.weight" not in trained.state_dict()  # no classifier: nothing to label-map


@pytest.mark.parametrize(
    ("kwargs", "objective", "message"),
    [
        ({"num_classes": 4}, "mae", "set model_kwargs.num_classes: 0"),
        ({"num_classes": 3}, "supervised", "needs a 4-class head"),
        ({"num_classes": 4}, "simclr", "objective must be 'supervised' or 'mae'"),
    ],
)
def test_an_objective_and_a_head_that_disagree_are_refused(
    idx_root: Path, tmp_path: Path, kwargs: dict, objective: str, message: str
) -> None:
    settings = {"source": "idx", "root": str(idx_root), "objective": objective, "train": {}}
    entry = TINY_VIT_SPEC | {
        "weights": ["pretrain"],
        "model_kwargs": TINY_VIT_SPEC["model_kwargs"] | kwargs,
    }
    with pytest.raises(ValueError, match=message):
        materialise("vit", entry, settings, ENGINE, tmp_path / "out", tmp_path / "ck")


class BandMeans(torch.nn.Module):
    """Features that are the mean brightness of four horizontal bands: the idx fixture's
    classes are linearly separable in them (the timm feature interface `linear_probe` uses)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0].reshape(len(x), 4, -1).mean(-1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x


def test_linear_probe_separates_what_the_features_separate(idx_root: Path) -> None:
    """Separable features give ~100 % on every seed; labels shuffled against the images
    leave the probe near chance (25 %)."""
    preprocess = Preprocess(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    train, val = idx_splits(str(idx_root), seed=0, val_fraction=0.25)
    scores = linear_probe(BandMeans(), preprocess, train, val, seeds=[0, 1, 2], epochs=1000)
    assert len(scores) == 3 and min(scores) >= 0.95
    shuffled = type(train)(train.tensors[0], train.tensors[1][torch.randperm(len(train))])
    assert linear_probe(BandMeans(), preprocess, shuffled, val, seeds=[0], epochs=1000)[0] <= 0.5
