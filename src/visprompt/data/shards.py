"""Decoded, resized uint8 image shards: one `.npy` per split, memory-mapped on read.

Layout of a shard directory (written by the data_ingestion pipeline):
    images_<split>.npy   uint8, (N, H, W, 3), RGB
    labels_<split>.npy   int64, (N,)
    classes.json         ["class0", "class1", ...]  (label i is classes[i])
Reading never decodes an image file: epochs cost a memcpy, not a JPEG decode.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from visprompt.atomic import atomic_path

SPLITS = ("train", "val", "test")


def write_split(directory: str | Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write one split atomically (temporary file, then rename)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array in (("images", images), ("labels", labels.astype(np.int64))):
        with atomic_path(directory / f"{stem}_{split}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array))


def write_classes(directory: str | Path, classes: Sequence[str]) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "classes.json").write_text(json.dumps(list(classes), indent=1))


def read_classes(directory: str | Path) -> list[str]:
    return json.loads((Path(directory) / "classes.json").read_text())


def read_split(directory: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images memmap uint8 NHWC, labels int64) of one split."""
    directory = Path(directory)
    path = directory / f"images_{split}.npy"
    if not path.is_file():
        raise FileNotFoundError(
            f"no shard for split '{split}' in {directory} (expected {path.name}); "
            "run `kedro run --pipelines data_ingestion` first"
        )
    return np.load(path, mmap_mode="r"), np.load(directory / f"labels_{split}.npy")


class ShardDataset(Dataset):
    """A split of a shard directory as (uint8 CHW tensor, label) pairs.

    Normalisation, resizing and augmentation run batched in the training loop (on the
    device), so workers only copy bytes.
    """

    def __init__(self, directory: str | Path, split: str) -> None:
        self.images, self.labels = read_split(directory, split)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(np.array(self.images[index])).permute(2, 0, 1)
        return image, int(self.labels[index])
