"""The `idx` source (Fashion-MNIST's files, gzip or plain, no download) and seeded subsets."""

from __future__ import annotations

import gzip
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from visprompt.data.sources import load_source
from visprompt.data.sources.idx import CLASS_NAMES
from visprompt.data.sources.subset import take_subset

SIZES = {"train": 30, "t10k": 20}


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    """An idx file: magic 0,0,0x08 (uint8),ndim; big-endian dims; the bytes."""
    data = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def fashion_folder(root: Path, compress: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Four idx files (labels cycling through the 10 classes)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in SIZES.items():
        images = rng.integers(0, 256, (n, 28, 28))
        labels = np.array([i % 10 for i in range(n)])
        write_idx(root / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, compress)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_idx_reads_the_four_files(tmp_path: Path, compress: bool) -> None:
    arrays = fashion_folder(tmp_path, compress)
    data = load_source("idx", {"root": str(tmp_path)})
    assert data.classes == CLASS_NAMES["fashion_mnist"]
    splits = Counter(r.split for r in data.records)
    assert splits == {"train": 30, "test": 20}
    first_test = next(r for r in data.records if r.split == "test")
    images, labels = arrays["t10k"]
    assert first_test.label == CLASS_NAMES["fashion_mnist"][int(labels[0])]
    assert np.array_equal(np.asarray(first_test.pixels()), images[0])


def test_idx_missing_files_name_the_files_and_folder(tmp_path: Path) -> None:
    fashion_folder(tmp_path, compress=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as missing:
        load_source("idx", {"root": str(tmp_path)})
    message = str(missing.value)
    assert "['t10k-labels-idx1-ubyte']" in message and str(tmp_path) in message
    assert "apt-get install dataset-fashion-mnist" in message and "download" not in message


def test_idx_refuses_corrupt_files_and_bad_class_lists(tmp_path: Path) -> None:
    fashion_folder(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_source("idx", {"root": str(tmp_path)})
    fashion_folder(tmp_path, compress=False)
    with pytest.raises(ValueError, match="label 9 but only 3 class names"):
        load_source("idx", {"root": str(tmp_path), "classes": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="unknown classes 'cifar'"):
        load_source("idx", {"root": str(tmp_path), "classes": "cifar"})


def test_max_per_class_caps_every_class_of_every_split(tmp_path: Path) -> None:
    fashion_folder(tmp_path, compress=True)
    data = load_source("idx", {"root": str(tmp_path), "subset": {"max_per_class": 2}})
    counts = Counter((r.split, r.label) for r in data.records)
    assert set(counts.values()) == {2} and len(counts) == 20  # 10 classes x 2 splits
    assert data.info["subset"]["records"] == 40 and data.info["subset"]["of"] == 50


def test_per_split_counts_keep_class_proportions_and_follow_the_seed() -> None:
    source = load_source("synthetic", {"num_classes": 3, "num_images": 60})  # no splits: "all"
    a = take_subset(source, per_split={"all": 30}, seed=1)
    b = take_subset(source, per_split={"all": 30}, seed=1)
    c = take_subset(source, per_split={"all": 30}, seed=2)
    assert [r.path for r in a.records] == [r.path for r in b.records]
    assert [r.path for r in a.records] != [r.path for r in c.records]
    full = Counter(r.label for r in source.records)
    half = Counter(r.label for r in a.records)
    assert sum(half.values()) == 30
    assert all(abs(half[k] - full[k] / 2) <= 1 for k in full)  # stratified
    order = [source.records.index(r) for r in a.records]
    assert order == sorted(order)  # the source's order is kept


def test_largest_remainders_fill_the_count() -> None:
    source = load_source("synthetic", {"num_classes": 3, "num_images": 9})
    picked = take_subset(source, per_split={"all": 7})
    assert sorted(Counter(r.label for r in picked.records).values()) == [2, 2, 3]


def test_subset_errors_name_the_option(tmp_path: Path) -> None:
    fashion_folder(tmp_path, compress=False)
    root = str(tmp_path)
    with pytest.raises(
        ValueError, match=r"sources.idx.subset.per_split.train = 31: choose 1 to 30"
    ):
        load_source("idx", {"root": root, "subset": {"per_split": {"train": 31}}})
    with pytest.raises(ValueError, match=r"names split\(s\) \['val'\]"):
        load_source("idx", {"root": root, "subset": {"per_split": {"val": 3}}})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['max_per_clas'\]"):
        load_source("idx", {"root": root, "subset": {"max_per_clas": 3}})
    with pytest.raises(ValueError, match="max_per_class must be >= 1"):
        load_source("idx", {"root": root, "subset": {"max_per_class": 0}})
