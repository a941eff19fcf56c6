"""Ingestion of every bad input: each gets a manifest row with its documented outcome."""

import hashlib

import numpy as np
import pandas as pd
import pytest
from image_kit import image_bytes, write

from visprompt.data.ingest import ingest
from visprompt.data.sources import load_source

FRACTIONS = {"train": 0.5, "val": 0.25, "test": 0.25}


@pytest.fixture
def ingested(bad_folder):
    source = load_source("imagefolder", {"root": str(bad_folder)})
    return ingest(source, image_size=16, fractions=FRACTIONS, seed=0)


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
    manifest, shards, report = ingested
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
    manifest, shards, report = ingested
    readable = manifest[manifest["error"].isna()]
    assert len(readable) == 10 and report["num_in_shards"] == 10
    total = sum(len(labels) for _, labels in shards.splits.values())
    assert total == 10
    for split, (images, labels) in shards.splits.items():
        assert images.shape[1:] == (16, 16, 3) and images.dtype == np.uint8
        rows = manifest[(manifest["split"] == split) & manifest["shard_index"].notna()]
        assert rows["shard_index"].tolist() == list(range(len(labels)))
        assert [shards.classes[i] for i in labels] == rows["label"].tolist()


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
    manifest, _, _ = ingest(load_source("imagefolder", {"root": str(tmp_path)}), 8, FRACTIONS, 1)
    copies = manifest[manifest["path"].isin(["a/copy1.png", "a/copy2.png"])]
    assert copies["sha256"].nunique() == 1 and copies["split"].nunique() == 1


def test_csv_missing_file_and_unknown_label(tmp_path):
    write(tmp_path / "a.png", image_bytes())
    write(tmp_path / "b.png", image_bytes(seed=1))
    (tmp_path / "labels.csv").write_text(
        "path,label,split\na.png,cat,train\nb.png,bird,train\ngone.png,cat,test\n"
    )
    source = load_source("csv", {"path": str(tmp_path / "labels.csv"), "classes": ["cat", "dog"]})
    manifest, shards, _ = ingest(source, 8, FRACTIONS, 0)
    gone = _row(manifest, "gone.png")
    assert gone["error"].startswith("file not found") and pd.isna(gone["sha256"])
    bird = _row(manifest, "b.png")
    assert pd.isna(bird["error"]) and pd.isna(bird["shard_index"])  # label not in class list
    assert shards.classes == ["cat", "dog"] and len(shards.splits["train"][1]) == 1
