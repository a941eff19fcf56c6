import struct
from pathlib import Path

import numpy as np
import pytest
from image_kit import image_bytes, write

from visprompt.data.sources import available, load_source
from visprompt.data.sources.synthetic import MAX_CLASSES, generate


def test_registry_lists_every_source_and_refuses_unknowns(tmp_path):
    assert available() == [
        "animal_mnist", "csv", "digits", "idx", "imagefolder", "mnist5k", "synthetic",
        "torchvision", "vtab1k",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown data source 'nope'"):
        load_source("nope")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colour'\].*'synthetic'"):
        load_source("synthetic", {"colour": 1})


def test_imagefolder_class_layout(bad_folder):
    data = load_source("imagefolder", {"root": str(bad_folder)})
    assert data.classes == ["birds", "cats", "dogs"]  # the empty folder still defines a class
    paths = {r.path for r in data.records}
    assert "cats/good0.png" in paths and "cats/README.txt" not in paths
    assert {r.split for r in data.records} == {None}
    assert len(data.records) == 9 + 5


def test_imagefolder_split_layout(tmp_path):
    for split in ("train", "test"):
        for label in ("x", "y"):
            write(tmp_path / split / label / "a.png", image_bytes(seed=hash(split + label) % 99))
    data = load_source("imagefolder", {"root": str(tmp_path)})
    assert data.classes == ["x", "y"]
    assert sorted((r.split, r.label) for r in data.records) == [
        ("test", "x"),
        ("test", "y"),
        ("train", "x"),
        ("train", "y"),
    ]


def test_imagefolder_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="imagefolder root"):
        load_source("imagefolder", {"root": str(tmp_path / "nothing")})


def test_csv_paths_relative_to_root_with_splits(tmp_path):
    write(tmp_path / "imgs" / "a.png", image_bytes())
    (tmp_path / "labels.csv").write_text(
        "path,label,split\nimgs/a.png,cat,train\nimgs/gone.png,dog,test\n"
    )
    data = load_source("csv", {"path": str(tmp_path / "labels.csv")})
    assert data.classes == ["cat", "dog"]
    first, missing = data.records
    assert first.file == (tmp_path / "imgs" / "a.png").resolve() and first.split == "train"
    assert not missing.file.exists()  # kept: ingestion marks it, validation fails on it


@pytest.mark.parametrize("bad", ["../outside.png", "imgs/../../outside.png", "/etc/passwd"])
def test_csv_path_escaping_root_is_refused(tmp_path, bad):
    (tmp_path / "labels.csv").write_text(f"path,label\nok.png,cat\n{bad},cat\n")
    with pytest.raises(ValueError, match=r"labels.csv:3: path .* escapes the root"):
        load_source("csv", {"path": str(tmp_path / "labels.csv")})


def test_csv_without_label_column(tmp_path):
    (tmp_path / "labels.csv").write_text("file,class\na.png,cat\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['label', 'path'\]"):
        load_source("csv", {"path": str(tmp_path / "labels.csv")})


def test_digits_are_the_real_bundled_set():
    data = load_source("digits")
    assert len(data.records) == 1797 and data.classes == [str(i) for i in range(10)]
    image = np.asarray(data.records[0].pixels())
    assert image.shape == (8, 8) and image.dtype == np.uint8
    levels = {round(k * 255 / 16) for k in range(17)}  # the 17 ink levels, scaled to 0..255
    assert set(np.unique(image)) <= levels and image.max() > 200


def test_synthetic_is_deterministic_balanced_and_colour_free():
    images, labels, names = generate(4, 80, 32, seed=5)
    again, labels2, _ = generate(4, 80, 32, seed=5)
    assert images.shape == (80, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again) and np.array_equal(labels, labels2)
    assert not np.array_equal(images, generate(4, 80, 32, seed=6)[0])
    assert np.bincount(labels).tolist() == [20] * 4 and len(set(names)) == 4
    # Not trivial: the mean colour of an image says nothing about its class (near chance).
    colour = images.reshape(80, -1, 3).mean(axis=1)
    centroids = np.stack([colour[labels == c].mean(axis=0) for c in range(4)])
    predicted = np.argmin(((colour[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == labels).mean() < 0.5


def test_synthetic_limits():
    with pytest.raises(ValueError, match="num_classes"):
        generate(MAX_CLASSES + 1, 100)
    with pytest.raises(ValueError, match="num_images"):
        generate(5, 3)
    assert len(load_source("synthetic", {"num_classes": 3, "num_images": 9}).records) == 9


def _idx(path: Path, array: np.ndarray) -> None:
    """An MNIST idx file (magic: 0x08 = uint8, then the number of dimensions)."""
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_reads_a_local_dataset_with_train_flag(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    data = load_source("torchvision", {"name": "MNIST", "root": str(tmp_path)})
    assert [r.split for r in data.records].count("train") == 6
    assert [r.split for r in data.records].count("test") == 4
    assert data.classes[0].startswith("0") and data.records[1].label == data.classes[1]
    assert data.records[0].pixels().size == (28, 28)


def test_torchvision_class_without_splits(tmp_path):
    write(tmp_path / "a" / "1.png", image_bytes())
    write(tmp_path / "b" / "2.png", image_bytes(seed=1))
    data = load_source("torchvision", {"name": "ImageFolder", "root": str(tmp_path)})
    assert data.classes == ["a", "b"] and {r.split for r in data.records} == {None}
    assert [r.label for r in data.records] == ["a", "b"]


def test_torchvision_missing_dataset_never_downloads(tmp_path):
    with pytest.raises(FileNotFoundError) as missing:
        load_source("torchvision", {"name": "MNIST", "root": str(tmp_path)})
    message = str(missing.value)
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path / "MNIST" / "raw") in message
    assert "download: true" not in message and "`idx` source" in message
    with pytest.raises(ValueError, match="not a torchvision.datasets class"):
        load_source("torchvision", {"name": "NotADataset", "root": str(tmp_path)})


@pytest.mark.parametrize("link", ["file", "folder"])
def test_imagefolder_refuses_symlinks_out_of_the_root(tmp_path, link):
    root, outside = tmp_path / "root", tmp_path / "secret"
    write(root / "cats" / "a.png", image_bytes(seed=1))
    write(outside / "b.png", image_bytes(seed=2))
    if link == "file":
        (root / "cats" / "b.png").symlink_to(outside / "b.png")
        named = "cats/b.png"
    else:
        (root / "dogs").symlink_to(outside, target_is_directory=True)
        named = "dogs"
    with pytest.raises(ValueError, match=rf"resolve outside the root.*{named} -> .*secret"):
        load_source("imagefolder", {"root": str(root)})


def test_imagefolder_follows_symlinks_inside_the_root(tmp_path):
    write(tmp_path / "cats" / "a.png", image_bytes(seed=1))
    (tmp_path / "dogs").mkdir()
    (tmp_path / "dogs" / "a.png").symlink_to(tmp_path / "cats" / "a.png")
    data = load_source("imagefolder", {"root": str(tmp_path)})
    assert sorted(r.path for r in data.records) == ["cats/a.png", "dogs/a.png"]
