"""Ingestion of every bad input: each gets a manifest row with its documented outcome."""

import hashlib

import numpy as np
import pandas as pd
import pytest
from image_kit import image_bytes, write
from PIL import Image

from visprompt.data.ingest import ingest
from visprompt.data.shards import read_classes, read_split
from visprompt.data.sources import load_source

FRACTIONS = {"train": 0.5, "val": 0.25, "test": 0.25}


@pytest.fixture
def ingested(bad_folder, tmp_path):
    """(manifest, shard directory, report) of the folder with every bad kind of file."""
    source = load_source("imagefolder", {"root": str(bad_folder)})
    manifest, report = ingest(source, 16, FRACTIONS, 0, tmp_path / "shards")
    return manifest, tmp_path / "shards", report


def _row(manifest: pd.DataFrame, path: str) -> pd.Series:
    return manifest.set_index("path").loc[path]


@pytest.mark.parametrize(
    "path, error",
    [
        ("cats/corrupt.jpg", "cannot decode"),
        ("cats/truncated.png", "cannot decode"),
        ("cats/empty.png", "empty file (0 bytes)"),
        ("cats/notes.jpg", "cannot identify image file"),
    ],
)
def test_unreadable_files_are_recorded_not_dropped(ingested, path, error):
    manifest, _, report = ingested
    row = _row(manifest, path)
    assert error in row["error"]
    assert pd.isna(row["shard_index"])
    assert path in [u["path"] for u in report["unreadable"]]


def test_zero_byte_file_has_zero_bytes(ingested):
    assert _row(ingested[0], "cats/empty.png")["bytes"] == 0


def test_conversions_are_counted(ingested):
    manifest, _, report = ingested
    assert _row(manifest, "dogs/gray.png")["mode"] == "L"
    assert _row(manifest, "dogs/alpha.png")["mode"] == "RGBA"
    assert _row(manifest, "dogs/deep.png")["mode"].startswith("I")
    converted = manifest[manifest["converted"].astype(bool)]["path"].tolist()
    assert sorted(converted) == ["dogs/alpha.png", "dogs/deep.png", "dogs/gray.png"]
    assert report["conversions"]["total"] == 3
    assert (
        report["conversions"]["by_mode"]["L"] == 1 and report["conversions"]["by_mode"]["RGBA"] == 1
    )


def test_tiny_image_is_decoded_and_described(ingested):
    row = _row(ingested[0], "cats/tiny.png")
    assert (row["width"], row["height"]) == (1, 1) and pd.isna(row["error"])


def test_shards_hold_exactly_the_readable_images(ingested):
    manifest, directory, report = ingested
    readable = manifest[manifest["error"].isna()]
    assert len(readable) == 10 and report["num_in_shards"] == 10
    classes = read_classes(directory)
    total = 0
    for split in ("train", "val", "test"):
        images, labels = read_split(directory, split)
        assert images.shape[1:] == (16, 16, 3) and images.dtype == np.uint8
        rows = manifest[(manifest["split"] == split) & manifest["shard_index"].notna()]
        kept = labels[labels >= 0]  # -1: a row left by an image that failed to decode
        assert rows["shard_index"].tolist() == np.flatnonzero(labels >= 0).tolist()
        assert [classes[i] for i in kept] == rows["label"].tolist()
        assert not images[labels < 0].any()
        total += len(kept)
    assert total == 10


def test_manifest_columns_and_hashes(ingested):
    manifest = ingested[0]
    assert list(manifest.columns[:9]) == [
        "path", "label", "split", "sha256", "width", "height", "mode", "bytes", "converted"
    ]  # fmt: skip
    good = _row(manifest, "cats/good0.png")
    assert good["sha256"] == hashlib.sha256(image_bytes(seed=0)).hexdigest()
    assert good["bytes"] == len(image_bytes(seed=0)) and good["mode"] == "RGB"
    assert (good["width"], good["height"]) == (16, 12)


def test_same_bytes_same_hash_and_split_when_unsplit(tmp_path):
    content = image_bytes(seed=3)
    for i in range(6):
        write(tmp_path / "a" / f"{i}.png", image_bytes(seed=10 + i))
        write(tmp_path / "b" / f"{i}.png", image_bytes(seed=20 + i))
    write(tmp_path / "a" / "copy1.png", content)
    write(tmp_path / "a" / "copy2.png", content)
    source = load_source("imagefolder", {"root": str(tmp_path)})
    manifest, _ = ingest(source, 8, FRACTIONS, 1, tmp_path / "out")
    copies = manifest[manifest["path"].isin(["a/copy1.png", "a/copy2.png"])]
    assert copies["sha256"].nunique() == 1 and copies["split"].nunique() == 1


def test_csv_missing_file_and_unknown_label(tmp_path):
    write(tmp_path / "a.png", image_bytes())
    write(tmp_path / "b.png", image_bytes(seed=1))
    (tmp_path / "labels.csv").write_text(
        "path,label,split\na.png,cat,train\nb.png,bird,train\ngone.png,cat,test\n"
    )
    source = load_source("csv", {"path": str(tmp_path / "labels.csv"), "classes": ["cat", "dog"]})
    manifest, _ = ingest(source, 8, FRACTIONS, 0, tmp_path / "out")
    gone = _row(manifest, "gone.png")
    assert gone["error"].startswith("file not found") and pd.isna(gone["sha256"])
    bird = _row(manifest, "b.png")
    assert pd.isna(bird["error"]) and pd.isna(bird["shard_index"])  # label not in class list
    assert read_classes(tmp_path / "out") == ["cat", "dog"]
    assert len(read_split(tmp_path / "out", "train")[1]) == 1


def _files(directory) -> dict[str, bytes]:
    """Every file of a shard directory except ingestion's resume state."""
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and ".work" not in p.parts
    }


def test_parallel_ingestion_writes_the_same_bytes_as_sequential(bad_folder, tmp_path):
    source = load_source("imagefolder", {"root": str(bad_folder)})
    _, one = ingest(source, 16, FRACTIONS, 0, tmp_path / "one", num_workers=1, chunk_size=64)
    _, two = ingest(source, 16, FRACTIONS, 0, tmp_path / "two", num_workers=2, chunk_size=3)
    first, second = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert set(first) >= {"images_train.npy", "manifest.csv", "dataset.json", "labels_val.npy"}
    assert first == second and one == two


def test_exif_orientation_counts_as_a_conversion(tmp_path):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (10, 20, 3), dtype=np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    (tmp_path / "a").mkdir()
    image.save(tmp_path / "a" / "rotated.jpg", exif=exif)
    write(tmp_path / "a" / "plain.png", image_bytes(seed=1))
    write(tmp_path / "b" / "plain.png", image_bytes(seed=2))
    source = load_source("imagefolder", {"root": str(tmp_path)})
    manifest, report = ingest(source, 8, FRACTIONS, 0, tmp_path.parent / f"{tmp_path.name}_out")
    rotated = _row(manifest, "a/rotated.jpg")
    assert rotated["converted"] and rotated["mode"] == "RGB" and rotated["width"] == 20
    assert not _row(manifest, "a/plain.png")["converted"]
    assert report["conversions"]["total"] == 1 and report["conversions"]["exif_orientation"] == 1


def test_an_empty_folder_gives_an_empty_manifest_not_a_crash(tmp_path):
    (tmp_path / "images" / "cats").mkdir(parents=True)
    (tmp_path / "images" / "dogs").mkdir()
    source = load_source("imagefolder", {"root": str(tmp_path / "images")})
    manifest, report = ingest(source, 8, FRACTIONS, 0, tmp_path / "out")
    assert len(manifest) == 0 and report["num_in_shards"] == 0
    assert read_split(tmp_path / "out", "train")[0].shape == (0, 8, 8, 3)
