"""Local pretraining for backbones no registry ships weights for, on a source named in the
recipe: `synthetic` (procedural shapes, K classes) or `idx` (Fashion-MNIST's 60,000 training
photographs, 10 classes). Objective `supervised` trains the model with its own K-class head
(label-mapping methods reuse it); `mae` trains a head-less ViT encoder as a masked autoencoder
(`visprompt.weights.mae`). Either reports a linear probe on frozen features over seeds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from visprompt import backbones
from visprompt.data.sources import idx, synthetic
from visprompt.training import Preprocess, TrainConfig, fit
from visprompt.training.plain import WholeModule
from visprompt.weights.mae import MaeConfig, pretrain_mae

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


def idx_splits(root: str, seed: int, val_fraction: float) -> tuple[TensorDataset, TensorDataset]:
    """Train/val TensorDatasets of (uint8 3xHxW, label) from an idx folder's train split
    (Fashion-MNIST), val a seeded `val_fraction`; the test split is never read."""
    folder = Path(root).expanduser()
    found = {stem: idx._find(folder, stem) for stem in idx.FILES["train"]}
    if None in found.values():
        raise idx._missing_error(folder, [stem for stem, path in found.items() if path is None])
    images, labels = (idx.read_idx(path) for path in found.values())
    x = torch.from_numpy(images.copy())[:, None].expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(labels.astype("int64"))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(val_fraction * len(y)))
    val, train = order[:n_val], order[n_val:]
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


def source_splits(settings: Mapping[str, Any], image_size: int) -> tuple[TensorDataset, ...]:
    """The recipe's source (`source`: synthetic or idx) as train/val TensorDatasets."""
    seed, val_fraction = int(settings.get("seed", 0)), float(settings.get("val_fraction", 0.1))
    source = settings.get("source", "synthetic")
    if source == "idx":
        return idx_splits(str(settings["root"]), seed, val_fraction)
    if source == "synthetic":
        k, n = int(settings["num_classes"]), int(settings["num_images"])
        return synthetic_splits(k, n, image_size, seed, val_fraction)
    raise ValueError(
        f"parameters_backbone.yml: pretrain.source must be 'synthetic' or 'idx'; got '{source}'"
    )


def pretrain_origin(settings: Mapping[str, Any]) -> str:
    """Where pretrained weights came from, for the spec and the provenance record."""
    objective = settings.get("objective", "supervised")
    if settings.get("source", "synthetic") == "idx":
        seed = settings.get("seed", 0)
        return f"pretrain:{objective}:idx({settings['root']}, train split, seed={seed})"
    return f"pretrain:synthetic(seed={settings.get('seed', 0)})"


@torch.no_grad()
def _features(model: nn.Module, data: TensorDataset, preprocess: Preprocess) -> torch.Tensor:
    model.eval()
    images = data.tensors[0]
    chunks = [
        backbones.pooled_features(model, preprocess(images[i : i + 1024]))
        for i in range(0, len(images), 1024)
    ]
    return torch.cat(chunks)


def linear_probe(
    model: nn.Module,
    preprocess: Preprocess,
    train_set: TensorDataset,
    val_set: TensorDataset,
    seeds: list[int],
    train_images: int = 10000,
    epochs: int = 30,
) -> list[float]:
    """Val top-1 of a linear classifier on `model`'s frozen pooled features, one per seed:
    each seed draws `train_images` training images and the classifier's init and batch order
    (features standardised with the training draw's mean and std; AdamW, lr 1e-3)."""
    train_x, val_x = _features(model, train_set, preprocess), _features(model, val_set, preprocess)
    train_y, val_y = train_set.tensors[1], val_set.tensors[1]
    classes = int(torch.cat([train_y, val_y]).max()) + 1
    scores = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(train_y), generator=generator)[:train_images]
        x, y = train_x[pick], train_y[pick]
        mean, std = x.mean(0), x.std(0) + 1e-6
        torch.manual_seed(seed)
        head = nn.Linear(x.shape[1], classes)
        optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-4)
        x = (x - mean) / std
        for _ in range(epochs):
            for batch in torch.randperm(len(y), generator=generator).split(256):
                loss = nn.functional.cross_entropy(head(x[batch]), y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            predicted = head((val_x - mean) / std).argmax(1)
        scores.append(round(float((predicted == val_y).float().mean()), 4))
    return scores


def pretrain(
    model: nn.Module,
    preprocess: Preprocess,
    settings: Mapping[str, Any],
    train: TrainConfig,
    on_epoch_end: EpochCallback | None = None,
) -> dict[str, Any]:
    """Pretrain `model` in place with the recipe `settings` (source, objective, seed,
    val_fraction; num_classes and num_images for the synthetic source; root for idx; `mae`:
    masking and decoder, the optimisation coming from `train`); return its figures, with a
    linear probe over `probe_seeds`."""
    objective = settings.get("objective", "supervised")
    train_set, val_set = source_splits(settings, preprocess.image_size)
    k = int(torch.cat([train_set.tensors[1], val_set.tensors[1]]).max()) + 1
    heads = backbones.num_source_classes(model)
    sizes = {"train_images": len(train_set), "val_images": len(val_set)}
    if objective == "supervised":
        if heads != k:
            raise ValueError(
                f"supervised pretraining on {k} source classes needs a {k}-class head; set "
                f"model_kwargs.num_classes: {k} (the model has {heads})"
            )
        result = fit(WholeModule(model), train_set, val_set, preprocess, train, on_epoch_end)
        figures = ("best_epoch", "best_val_top1", "train_time_s", "epochs_run")
        stats = {"num_classes": k} | {name: getattr(result, name) for name in figures}
    elif objective == "mae":
        if heads:
            raise ValueError(
                "MAE pretraining trains a head-less encoder; set model_kwargs.num_classes: 0 "
                f"(the model has a {heads}-class head)"
            )
        optimisation = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "min_lr")
        config = MaeConfig(
            **{name: getattr(train, name) for name in (*optimisation, "seed")},
            **dict(settings.get("mae") or {}),
        )
        stats = pretrain_mae(model, train_set, val_set, preprocess, config, on_epoch_end)
    else:
        raise ValueError(
            f"parameters_backbone.yml: pretrain.objective must be 'supervised' or 'mae'; got "
            f"'{objective}'"
        )
    seeds = [int(s) for s in settings.get("probe_seeds") or []]
    if seeds:
        probe = linear_probe(model, preprocess, train_set, val_set, seeds)
        stats |= {"probe_seeds": seeds, "probe_val_top1": probe}
    return sizes | stats
