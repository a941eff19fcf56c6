"""Ingestion: source records -> manifest, decoded RGB shards per split, and a report."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from visprompt.data import shards
from visprompt.data.convert import fit, to_rgb
from visprompt.data.manifest import COLUMNS
from visprompt.data.sources import Record, SourceData
from visprompt.data.splits import assign_splits

# What a decoder raises on a file that is not a (complete) image.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass
class ShardSet:
    """Decoded images per split, ready to be written as a shard directory."""

    classes: list[str]
    splits: dict[str, tuple[np.ndarray, np.ndarray]]

    def write(self, directory: str | Path) -> None:
        shards.write_classes(directory, self.classes)
        for split, (images, labels) in self.splits.items():
            shards.write_split(directory, split, images, labels)


def _split_rank(split: str | None) -> int:
    return shards.SPLITS.index(split) if split in shards.SPLITS else len(shards.SPLITS)


def _pixel_hash(image: Image.Image) -> str:
    digest = hashlib.sha256(f"{image.mode}:{image.size}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def inspect_record(record: Record, image_size: int) -> tuple[dict[str, Any], np.ndarray | None]:
    """The manifest row of one record and its (size, size, 3) uint8 pixels (None if unreadable).

    Files are hashed on their bytes; in-memory images on mode, size and pixels.
    """
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(path=record.path, label=record.label, split=record.split, converted=False)
    try:
        if record.file is not None:
            if not record.file.is_file():
                row["error"] = f"file not found: {record.file}"
                return row, None
            data = record.file.read_bytes()
            row["bytes"], row["sha256"] = len(data), hashlib.sha256(data).hexdigest()
            if not data:
                row["error"] = "empty file (0 bytes)"
                return row, None
            image = Image.open(io.BytesIO(data))
            image.load()
        else:
            image = record.pixels()
            row["sha256"] = _pixel_hash(image)
            row["bytes"] = len(image.tobytes())
        row["width"], row["height"] = image.size
        row["mode"] = image.mode
        rgb, row["converted"] = to_rgb(image)
        return row, fit(rgb, image_size)
    except _DECODE_ERRORS as error:
        row["error"] = f"cannot decode: {type(error).__name__}: {error}"
        return row, None


def ingest(
    source: SourceData,
    image_size: int,
    fractions: Mapping[str, float],
    seed: int,
) -> tuple[pd.DataFrame, ShardSet, dict[str, Any]]:
    """(manifest, shards, report) of a source.

    Every record gets a manifest row, readable or not: unreadable ones carry `error` and
    stay out of the shards, and validation then fails naming them (nothing is dropped
    silently). Rows whose label is not in the class list or whose split is not one of
    train/val/test also stay out of the shards, for validation to report.
    """
    rows, pixels = [], []
    for record in tqdm(source.records, desc="ingest", unit="img", mininterval=2.0):
        row, array = inspect_record(record, image_size)
        rows.append(row)
        pixels.append(array)
    keys = [r["sha256"] or f"path:{r['path']}" for r in rows]
    splits = assign_splits(
        keys, [r["label"] for r in rows], [r["split"] for r in rows], fractions, seed
    )
    for row, split in zip(rows, splits, strict=True):
        row["split"] = split
    manifest = pd.DataFrame(rows, columns=list(COLUMNS))
    manifest["shard_index"] = pd.array([pd.NA] * len(manifest), dtype="Int64")
    class_index = {name: i for i, name in enumerate(source.classes)}
    shard_splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    order = sorted(range(len(rows)), key=lambda i: (_split_rank(rows[i]["split"]), rows[i]["path"]))
    for split in shards.SPLITS:
        chosen = [
            i
            for i in order
            if rows[i]["split"] == split
            and pixels[i] is not None
            and rows[i]["label"] in class_index
        ]
        images = np.zeros((len(chosen), image_size, image_size, 3), dtype=np.uint8)
        for position, i in enumerate(chosen):
            images[position] = pixels[i]
        labels = np.array([class_index[rows[i]["label"]] for i in chosen], dtype=np.int64)
        manifest.loc[chosen, "shard_index"] = np.arange(len(chosen))
        shard_splits[split] = (images, labels)
    manifest = manifest.loc[order].reset_index(drop=True)
    report = _report(manifest, source, image_size)
    return manifest, ShardSet(classes=list(source.classes), splits=shard_splits), report


def _report(manifest: pd.DataFrame, source: SourceData, image_size: int) -> dict[str, Any]:
    decoded = manifest[manifest["error"].isna()]
    in_shards = manifest[manifest["shard_index"].notna()]
    counts = {
        split: {name: int(n) for name, n in group["label"].value_counts().sort_index().items()}
        for split, group in in_shards.groupby("split")
    }
    converted = decoded[decoded["converted"].astype(bool)]
    return {
        "origin": source.origin,
        "source_info": source.info,
        "image_size": image_size,
        "classes": list(source.classes),
        "num_records": len(manifest),
        "num_in_shards": len(in_shards),
        "images_per_split_and_class": counts,
        "conversions": {
            "total": len(converted),
            "by_mode": dict(sorted(Counter(converted["mode"]).items())),
        },
        "unreadable": manifest.loc[manifest["error"].notna(), ["path", "error"]].to_dict(
            orient="records"
        ),
    }
