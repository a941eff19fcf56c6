"""The manifest table: one row per source image, and the dataset's content hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import pandas as pd

from visprompt.data.shards import SPLITS

# The contract's columns, then `error` (why an image could not be read: validation's
# `decodable` rule fails on it) and `shard_index` (the image's row in its split's shard).
_CONTRACT = ("path", "label", "split", "sha256", "width", "height", "mode", "bytes", "converted")
COLUMNS = (*_CONTRACT, "error", "shard_index")
TEXT_COLUMNS = ("path", "label", "split", "sha256", "mode", "error")


def normalise(manifest: pd.DataFrame) -> pd.DataFrame:
    """Text columns as strings with missing values as None, whatever the reader inferred
    (a CSV round trip turns labels "0".."9" into integers and empty errors into NaN)."""
    frame = manifest.copy()
    for column in TEXT_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].map(lambda v: None if pd.isna(v) else str(v))
            frame[column] = frame[column].astype(object)
    return frame


def content_hash(manifest: pd.DataFrame, classes: Sequence[str]) -> str:
    """sha256 over the class list and the sorted (split, label, image sha256) triples: the
    data a model sees, independent of file names and row order."""
    frame = normalise(manifest)
    triples = sorted(
        (str(s), str(lab), str(h))
        for s, lab, h in zip(frame["split"], frame["label"], frame["sha256"], strict=True)
    )
    payload = json.dumps({"classes": list(classes), "images": triples}, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def dataset_summary(manifest: pd.DataFrame, classes: Sequence[str]) -> dict:
    """Content hash and images per split (all of train/val/test) and class in the shards."""
    frame = normalise(manifest)
    in_shards = frame[frame["shard_index"].notna()]
    counts = {
        split: {
            c: int(((in_shards["split"] == split) & (in_shards["label"] == c)).sum())
            for c in classes
        }
        for split in SPLITS
    }
    return {
        "data_hash": content_hash(frame, classes),
        "num_images": len(in_shards),
        "num_classes": len(classes),
        "classes": list(classes),
        "counts": counts,
    }
