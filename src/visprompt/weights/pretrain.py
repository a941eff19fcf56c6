"""Local pretraining of a backbone with its own K-class head on the synthetic source, for
backbones no registry ships weights for; label-mapping methods can reuse the head."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from visprompt import backbones
from visprompt.data.sources import synthetic
from visprompt.training import Preprocess, TrainConfig, fit
from visprompt.training.plain import WholeModule

EpochCallback = Callable[[int, dict[str, float]], None]


def synthetic_splits(
    num_classes: int, num_images: int, image_size: int, seed: int, val_fraction: float
) -> tuple[TensorDataset, TensorDataset]:
    """Train/val TensorDatasets of (uint8 CHW, label) drawn from the synthetic source."""
    images, labels, _ = synthetic.generate(num_classes, num_images, image_size, seed)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels)
    n_val = max(num_classes, int(round(val_fraction * len(y))))
    return TensorDataset(x[n_val:], y[n_val:]), TensorDataset(x[:n_val], y[:n_val])


def pretrain(
    model: nn.Module,
    preprocess: Preprocess,
    settings: Mapping[str, Any],
    train: TrainConfig,
    on_epoch_end: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train `model` with its own K-class head on the synthetic source; return its numbers.

    `settings`: num_classes (K, must equal the model's head), num_images, seed, val_fraction.
    """
    k = int(settings["num_classes"])
    if backbones.num_source_classes(model) != k:
        raise ValueError(
            f"pretraining on {k} synthetic classes needs a {k}-class head; set "
            f"model_kwargs.num_classes: {k} (the model has "
            f"{backbones.num_source_classes(model)})"
        )
    train_set, val_set = synthetic_splits(
        k,
        int(settings["num_images"]),
        preprocess.image_size,
        int(settings.get("seed", 0)),
        float(settings.get("val_fraction", 0.1)),
    )
    result = fit(WholeModule(model), train_set, val_set, preprocess, train, on_epoch_end)
    sizes = {"num_classes": k, "train_images": len(train_set), "val_images": len(val_set)}
    figures = ("best_epoch", "best_val_top1", "train_time_s", "epochs_run")
    return sizes | {name: getattr(result, name) for name in figures}
