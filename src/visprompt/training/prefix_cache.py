"""Prefix activation caching: run a frozen, deterministic prefix once per dataset.

Methods whose trainable part starts after a frozen prefix (`split_for_cache()` returns
(prefix, suffix)) train only the suffix on cached activations when the inputs do not
change between epochs (no augmentation). The cache lives in process memory, on the
training device, in an LRU store bounded by a byte budget; a dataset whose activations
would exceed the budget is not cached (the loop trains uncached and logs a warning).

Key: the frozen state of the whole model (every frozen parameter and buffer byte), the
prefix's identity (class, structure, own state, and its output on a fixed probe of the
dataset, which pins the layer it stops at), the dataset's identity (length + a content
fingerprint), the preprocessing and the precision. Any change gives a new key, so a stale
entry is never reused. The store keeps entries after `fit` returns (a rerun with the same
key skips the prefix); `STORE.clear()` frees them.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from visprompt.backbones import tensors_sha256, update_digest

log = logging.getLogger(__name__)

#: Datasets up to this many items are fingerprinted in full; larger ones on evenly spaced items.
FINGERPRINT_ITEMS = 4096
_PROBE_ITEMS = 2


@dataclass
class Activations:
    """Prefix outputs of a whole dataset, in dataset order, on the training device."""

    features: torch.Tensor
    labels: torch.Tensor

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()


class PrefixCacheStore:
    """LRU of `Activations` by key, evicting the oldest entries to stay within a budget."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, Activations] = OrderedDict()

    def get(self, key: str) -> Activations | None:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        return None

    def put(self, key: str, value: Activations, max_bytes: int) -> None:
        self._entries.pop(key, None)
        while self._entries and self.nbytes + value.nbytes > max_bytes:
            self._entries.popitem(last=False)
        self._entries[key] = value

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._entries.values())

    def clear(self) -> None:
        self._entries.clear()


STORE = PrefixCacheStore()


def dataset_fingerprint(dataset: Dataset, max_items: int = FINGERPRINT_ITEMS) -> str:
    """Length plus a hash of every item (or `max_items` evenly spaced ones) and its label."""
    n = len(dataset)
    digest = hashlib.sha256(f"n={n}".encode())
    step = max(1, n / max_items)
    for index in sorted({int(i * step) for i in range(min(n, max_items))}):
        image, label = dataset[index]
        update_digest(digest, torch.as_tensor(image))
        digest.update(f"|{int(label)}|".encode())
    return digest.hexdigest()


def frozen_state_digest(model: nn.Module) -> str:
    """Hash of every tensor of `model` that training does not change (frozen weights, buffers).

    Segments returned by `split_for_cache` may hold the backbone without registering it, so
    the backbone's state is hashed from the whole model.
    """
    frozen = [(n, p) for n, p in model.named_parameters() if not p.requires_grad]
    return tensors_sha256(frozen + list(model.named_buffers()))


def prefix_identity(prefix: nn.Module, probe: torch.Tensor) -> str:
    """Class, structure, state and output on `probe` (a preprocessed batch) of the prefix."""
    digest = hashlib.sha256(f"{type(prefix).__qualname__}\n{prefix!r}".encode())
    for name, tensor in sorted(prefix.state_dict().items()):
        digest.update(name.encode())
        update_digest(digest, tensor)
    with torch.no_grad():
        update_digest(digest, prefix(probe))
    return digest.hexdigest()


def cached_activations(
    prefix: nn.Module,
    dataset: Dataset,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    *,
    device: torch.device,
    batch_size: int,
    max_bytes: int,
    context: str,
    autocast: Callable[[], object],
) -> tuple[Activations | None, str]:
    """(activations, status) with status "hit", "built" or "over_budget" (then None).

    `context` is folded into the key (the model's frozen-state digest, preprocessing,
    precision); `autocast` is the engine's mixed-precision context so cached features match
    what the uncached forward computes.
    """
    probe = range(min(_PROBE_ITEMS, len(dataset)))
    probe_images = torch.stack([torch.as_tensor(dataset[i][0]) for i in probe])
    with autocast():
        ident = prefix_identity(prefix, preprocess(probe_images.to(device)))
    key = hashlib.sha256(f"{ident}|{dataset_fingerprint(dataset)}|{context}".encode()).hexdigest()
    hit = STORE.get(key)
    if hit is not None:
        return hit, "hit"
    acts = _compute(prefix, dataset, preprocess, device, batch_size, max_bytes, autocast)
    if acts is None:
        return None, "over_budget"
    STORE.put(key, acts, max_bytes)
    return acts, "built"


def _compute(
    prefix: nn.Module,
    dataset: Dataset,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int,
    max_bytes: int,
    autocast: Callable[[], object],
) -> Activations | None:
    n = len(dataset)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    features: torch.Tensor | None = None
    labels = torch.empty(n, dtype=torch.long, device=device)
    start = 0
    with torch.no_grad(), autocast():
        for images, target in loader:
            out = prefix(preprocess(images.to(device)))
            if features is None:
                need = n * out[0].numel() * out.element_size()
                if need > max_bytes:
                    log.warning(
                        "prefix cache: %d samples need %.1f MiB > budget %.1f MiB "
                        "(TrainConfig.cache_max_bytes); training without the cache",
                        n,
                        need / 2**20,
                        max_bytes / 2**20,
                    )
                    return None
                features = torch.empty((n, *out.shape[1:]), dtype=out.dtype, device=device)
            features[start : start + len(out)] = out
            labels[start : start + len(out)] = target.to(device)
            start += len(out)
    if features is None:
        raise ValueError("prefix cache: the dataset is empty")
    return Activations(features, labels)
