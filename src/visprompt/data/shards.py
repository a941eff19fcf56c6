"""Decoded, resized uint8 image shards: one `.npy` per split, memory-mapped on read, so an
epoch costs a memcpy, not a JPEG decode.

A shard directory (staged by ingestion, swapped in once validated: `visprompt.data.staging`):
    images_<split>.npy   uint8, (N, H, W, 3), RGB
    labels_<split>.npy   int64, (N,)
    classes.json         ["class0", "class1", ...]  (label i is classes[i])
    dataset.json         {"data_hash", "image_size", "counts", "shards_sha256"}: what
                         ingestion wrote (shards_sha256: the digest of the arrays)
    manifest.csv         one row per source image (visprompt.data.manifest)
    summary.json         the validation summary of exactly this data (written on success)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from visprompt import atomic
from visprompt.atomic import atomic_path
from visprompt.data.sizes import ConfigError

SPLITS = ("train", "val", "test")
INFO = "dataset.json"
SUMMARY = "summary.json"
MANIFEST = "manifest.csv"
CONTENT = "shards_sha256"  # the arrays' digest, in dataset.json and the validation summary
WORK = ".work"  # ingestion's resume state; removed when a version is committed


def write_split(directory: str | Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write one split atomically (temporary file, then rename)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    directory = Path(directory)  # atomic writes create missing parents
    save_array(directory / f"images_{split}.npy", images)
    save_array(directory / f"labels_{split}.npy", labels.astype(np.int64))


def save_array(path: Path, array: np.ndarray) -> None:
    """np.save through a temporary file and a rename: a reader never sees half an array."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array))


def write_json(path: Path, data: Any) -> None:
    """JSON written atomically (temporary file, fsync, rename)."""
    atomic.write_text(path, json.dumps(data, indent=1))


def write_classes(directory: str | Path, classes: Sequence[str]) -> None:
    write_json(Path(directory) / "classes.json", list(classes))


def read_classes(directory: str | Path) -> list[str]:
    return json.loads((Path(directory) / "classes.json").read_text())


def read_split(directory: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images memmap uint8 NHWC, labels int64) of one split."""
    directory = Path(directory)
    path = directory / f"images_{split}.npy"
    if not path.is_file():
        raise FileNotFoundError(
            f"no shard for split '{split}' in {directory} (expected {path.name}); "
            "run `kedro run --pipelines data_ingestion,data_validation` first"
        )
    return np.load(path, mmap_mode="r"), np.load(directory / f"labels_{split}.npy")


def label_counts(directory: str | Path) -> dict[str, dict[str, int]]:
    """Images per split and class name, counted from the label arrays on disk."""
    directory = Path(directory)
    classes = read_classes(directory)
    counts = {}
    for split in SPLITS:
        path = directory / f"labels_{split}.npy"
        if path.is_file():
            labels = np.load(path)
            counts[split] = {c: int((labels == i).sum()) for i, c in enumerate(classes)}
    return counts


def write_info(directory: str | Path, data_hash: str, image_size: int) -> None:
    """Record what the shards hold (the source data's hash, counts and the digest of the
    arrays themselves, computed here once per data version); a validation summary must
    match it."""
    directory = Path(directory)
    info = {
        "data_hash": data_hash,
        "image_size": image_size,
        "counts": label_counts(directory),
        CONTENT: content_sha256(directory),
    }
    write_json(directory / INFO, info)


def recorded_content(directory: str | Path) -> str | None:
    """The arrays' digest that ingestion recorded in dataset.json (what validation passes on)."""
    return json.loads((Path(directory) / INFO).read_text()).get(CONTENT)


def split_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of one split's pixels and labels (dtype and shape included)."""
    digest = hashlib.sha256()
    for array in (images, labels):
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


_DIGESTS: dict[tuple, str] = {}


def content_sha256(directory: str | Path) -> str:
    """sha256 over the class list and every split's pixels and labels: what a model sees.

    Memoised per process on the files' identity (inode, size, mtime): the nodes of one run
    check the same shards without reading them again, and a file written since is re-read.
    """
    directory = Path(directory)
    digest = hashlib.sha256((directory / "classes.json").read_bytes())
    for split in SPLITS:
        files = [directory / f"{kind}_{split}.npy" for kind in ("images", "labels")]
        if not files[0].is_file():
            continue
        stamp = tuple((str(f.resolve()), *_identity(f)) for f in files)
        if stamp not in _DIGESTS:
            _DIGESTS[stamp] = split_digest(*read_split(directory, split))
        digest.update(f"{split}:{_DIGESTS[stamp]}".encode())
    return digest.hexdigest()


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def require_validated(directory: str | Path, summary: Mapping[str, Any]) -> None:
    """Refuse shards whose validation summary failed or describes other data (a copied,
    half-restored or tampered folder): its data_hash and counts must match the shards'."""
    directory = Path(directory)
    fix = (
        "rerun `kedro run --pipelines data_ingestion,data_validation` (or `dvc repro "
        "data`) so that shards and summary are built and validated together"
    )
    if summary.get("success") is not True:
        raise ValueError(
            f"data validation failed or never ran (success is not true in the validation "
            f"summary of {directory}); see data/08_reporting/validation/report.json; {fix}"
        )
    info_path = directory / INFO
    if not info_path.is_file():
        raise ValueError(f"{info_path} is missing: the shards carry no content hash; {fix}")
    info = json.loads(info_path.read_text())
    if summary.get("data_hash") != info["data_hash"]:
        raise ValueError(
            f"the validation summary's data_hash {summary.get('data_hash')} does not match the "
            f"data_hash {info['data_hash']} of the shards in {info_path}: the summary "
            f"validated other data; {fix}"
        )
    on_disk = label_counts(directory)
    if summary.get("counts") != on_disk or info["counts"] != on_disk:
        raise ValueError(
            f"images per split and class in the label arrays of {directory} ({on_disk}) differ "
            f"from the validation summary ({summary.get('counts')}); {fix}"
        )
    actual = content_sha256(directory)
    if summary.get(CONTENT) != actual:
        raise ConfigError(
            f"the shards in {directory} are not the data that validation passed: their "
            f"content hash {actual[:16]} differs from {CONTENT} "
            f"{str(summary.get(CONTENT))[:16]} in the validation summary ({SUMMARY}), so "
            "images or labels changed after validation (a swap keeps every count). Rerun "
            "data validation on the data you mean to train on: `kedro run --pipelines "
            "data_ingestion,data_validation` (or `dvc repro data`)"
        )


class ShardDataset(Dataset):
    """A split of a shard directory as (uint8 CHW tensor, label) pairs: preprocessing runs
    batched on the device, so workers only copy bytes."""

    def __init__(self, directory: str | Path, split: str) -> None:
        self.images, self.labels = read_split(directory, split)
        self._digest: str | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of the split's pixels and labels."""
        return int(self.images.nbytes + self.labels.nbytes)

    def content_digest(self) -> str:
        """sha256 of the split's pixels and labels: what a cache of its features depends on."""
        if self._digest is None:
            self._digest = split_digest(self.images, self.labels)
        return self._digest

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(np.array(self.images[index])).permute(2, 0, 1)
        return image, int(self.labels[index])
