"""Prefix activation caching: run a frozen, deterministic prefix once per `fit` call.

Methods whose trainable part starts after a frozen prefix (`split_for_cache()` returns
(prefix, suffix)) train only the suffix on cached activations when the inputs do not
change between epochs (no augmentation). A cache lives on the training device while it fits
in the byte budget, or spills to a file in the `fit` call's temporary folder past it (read
back batch by batch, freed when `fit` returns).

Seeds of one run compute the same prefix outputs: a small cache on the device (at most
`REUSE_MAX_BYTES` in all) is kept for the next `fit` whose prefix, data, preprocessing and
precision are identical (`reuse_key`; the prefix's tensors and the dataset's bytes are
hashed, not named), so `make run`'s 3 seeds of a cached CNN run build it once. Larger
caches are freed when `fit` returns, so a later run trains with all of its memory;
`release_reused()` frees the kept ones. `live_bytes()` tells how many bytes caches hold
right now (for tests and reports).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from visprompt.backbones import tensors_sha256
from visprompt.progress import progress_bar

if TYPE_CHECKING:
    from lightning.fabric import Fabric

    from visprompt.methods.base import AdaptedModel
    from visprompt.training.config import Preprocess, TrainConfig

log = logging.getLogger(__name__)

_live = {"bytes": 0}
#: Byte budget of the caches kept across `fit` calls (the features of a few thousand images)
REUSE_MAX_BYTES = 256 * 2**20
#: Datasets hashed for reuse at most this large (hashing reads every byte)
REUSE_MAX_DATA_BYTES = 2**30
_reused: OrderedDict[str, Activations] = OrderedDict()


def live_bytes() -> int:
    """Bytes held by every prefix cache alive in this process (device or host memory)."""
    return _live["bytes"]


def _count(tensor: torch.Tensor) -> None:
    nbytes = tensor.numel() * tensor.element_size()
    _live["bytes"] += nbytes
    weakref.finalize(tensor, lambda: _live.__setitem__("bytes", _live["bytes"] - nbytes))


@dataclass
class Activations:
    """Prefix outputs of a whole dataset in dataset order: on the device, or in a file."""

    features: torch.Tensor
    labels: torch.Tensor
    #: True when the features live in a memory-mapped file, not in device memory
    spilled: bool = False

    @property
    def nbytes(self) -> int:
        """Bytes of the features held on the device (0 when spilled to a file)."""
        return 0 if self.spilled else self.features.numel() * self.features.element_size()

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, labels) of `indices`, on the training device."""
        device = self.labels.device
        idx = torch.as_tensor(indices, device=self.features.device)
        return self.features[idx].to(device, non_blocking=True), self.labels[idx.to(device)]


def frozen_state_digest(model: nn.Module) -> str:
    """Hash of every tensor of `model` that training does not change (frozen weights, buffers).

    Segments returned by `split_for_cache` may hold the backbone without registering it, so
    the backbone's state is hashed from the whole model.
    """
    frozen = [(n, p) for n, p in model.named_parameters() if not p.requires_grad]
    return tensors_sha256(frozen + list(model.named_buffers()))


def reuse_key(
    prefix: nn.Module, frozen_digest: str, dataset: Dataset, *settings: object
) -> str | None:
    """What determines `prefix`'s outputs on `dataset`, hashed; None when it cannot be told.

    The prefix's structure, `frozen_digest` (`frozen_state_digest` of the model it was cut
    from: a prefix may hold the backbone unregistered), the dataset's content
    (`content_digest()`, which `ShardDataset` offers) and `settings` (preprocessing, device,
    batch size, precision).
    """
    digest = getattr(dataset, "content_digest", None)
    size = getattr(dataset, "nbytes", None)
    if digest is None or size is None or size > REUSE_MAX_DATA_BYTES:
        return None  # no content to hash, or too much to hash on every `fit`
    text = "\n".join([repr(prefix), frozen_digest, digest(), *map(repr, settings)])
    return hashlib.sha256(text.encode()).hexdigest()


def release_reused() -> None:
    """Free the activations kept across `fit` calls."""
    _reused.clear()


def prepare(
    model: AdaptedModel,
    frozen_digest: str,
    train_set: Dataset,
    val_shard: Dataset | None,
    preprocess: Preprocess,
    config: TrainConfig,
    fabric: Fabric,
    batch_size: int,
    spill_dir: str,
    finished: bool,
) -> tuple[nn.Module | None, Activations | None, Activations | None, dict[str, Any]]:
    """(suffix or None, train activations, val activations, info) for one `fit`; none for
    a `finished` run (a resumed checkpoint that has no epoch left to train).

    `info` is `TrainResult.cache`. `frozen_digest` (the model's frozen tensors, hashed once
    per `fit`) keys the reuse of a cache an earlier `fit` built (`reuse_key`).
    """
    start = time.perf_counter()
    info: dict[str, Any] = {"train": "off", "val": "off", "build_s": 0.0}
    split = None if finished else _split(model, config)
    if split is None:
        return None, None, None, info
    prefix, suffix = split
    settings = (preprocess, str(fabric.device), batch_size, config.precision)

    def activations(dataset: Dataset, max_bytes: int, split: str) -> tuple[Activations, str]:
        key = reuse_key(prefix, frozen_digest, dataset, *settings)
        if key in _reused:
            _reused.move_to_end(key)
            return _reused[key], "reused"
        built, status = _build(
            prefix, dataset, preprocess, fabric, batch_size, max_bytes, spill_dir,
            f"prefix cache ({split})" if config.progress and fabric.is_global_zero else None,
        )  # fmt: skip
        if key is not None and not built.spilled and built.nbytes <= REUSE_MAX_BYTES:
            _reused[key] = built  # kept for a later `fit` (small, on the device)
            while sum(a.nbytes for a in _reused.values()) > REUSE_MAX_BYTES:
                _reused.popitem(last=False)
        return built, status

    train, info["train"] = activations(train_set, config.cache_max_bytes, "train")
    val = None
    if val_shard is not None:
        room = max(0, config.cache_max_bytes - train.nbytes)
        val, info["val"] = activations(val_shard, room, "val")
    info["build_s"] = time.perf_counter() - start
    return suffix, train, val, info


def _split(model: AdaptedModel, config: TrainConfig) -> tuple[nn.Module, nn.Module] | None:
    if not config.cache_prefix:
        return None
    if config.augment != "none":
        log.warning("cache_prefix ignored: augment=%r changes inputs every epoch", config.augment)
        return None
    if config.precision not in ("32-true", "64-true") and not config.precision.endswith("mixed"):
        log.warning("cache_prefix ignored: precision %s converts the module", config.precision)
        return None
    return model.split_for_cache()


def _build(
    prefix: nn.Module,
    dataset: Dataset,
    preprocess: Preprocess,
    fabric: Fabric,
    batch_size: int,
    max_bytes: int,
    spill_dir: str,
    progress: str | None = None,
) -> tuple[Activations, str]:
    """(activations, status): status "built" (on the device) or "spilled" (to `spill_dir`).

    Under the engine's autocast, so cached features match what the uncached forward computes.
    `progress` names the progress bar of the pass (minutes at 128 px on a CPU); None: no bar.
    """
    device, n = fabric.device, len(dataset)
    if n == 0:
        raise ValueError("prefix cache: the dataset is empty")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    features: torch.Tensor | None = None
    labels = torch.empty(n, dtype=torch.long, device=device)
    start = 0
    with torch.no_grad(), fabric.autocast():
        for images, target in progress_bar(
            loader, desc=progress, disable=progress is None, leave=False, unit="batch"
        ):
            out = prefix(preprocess(images.to(device)))
            if features is None:
                spilled = n * out[0].numel() * out.element_size() > max_bytes
                features = _allocate(n, out, device, spilled, Path(spill_dir))
            features[start : start + len(out)] = out.to(features.device)
            labels[start : start + len(out)] = target.to(device)
            start += len(out)
    assert features is not None
    _count(features)
    _count(labels)
    return Activations(features, labels, spilled), "spilled" if spilled else "built"


def _allocate(
    n: int, first: torch.Tensor, device: torch.device, spill: bool, spill_dir: Path
) -> torch.Tensor:
    """Room for `n` outputs like `first`: on the device, or (`spill`) in a mapped file."""
    shape, dtype = (n, *first.shape[1:]), first.dtype
    if not spill:
        return torch.empty(shape, dtype=dtype, device=device)
    spill_dir.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="prefix-", suffix=".bin", dir=spill_dir)
    os.close(handle)
    path = Path(name)
    log.info("prefix cache: %d samples over TrainConfig.cache_max_bytes; spilling to %s", n, path)
    flat = torch.from_file(str(path), shared=True, size=n * first[0].numel(), dtype=dtype)
    return flat.view(shape)
