"""Ingestion: source records -> a shard directory (manifest, decoded RGB shards, report).

Streaming and parallel, so memory does not grow with the data: pass 1 hashes every record
(splits and shard rows follow from the hashes); pass 2 decodes chunks in `num_workers`
processes straight into their rows of the per-split `.npy` files (positioned writes, no
mapping held). A chunk is recorded done only after its pixels are synced, so a killed
ingestion resumes without redoing or trusting half-written chunks. `dataset.json`, written
last, marks the directory complete; one left by other inputs is emptied first. Unreadable
records keep a manifest row with `error` (and stay out of the shards) for validation to name.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from visprompt.data import shards, staging
from visprompt.data.convert import fit, to_rgb
from visprompt.data.manifest import COLUMNS, content_hash
from visprompt.data.sources import Record, SourceData
from visprompt.data.splits import assign_splits
from visprompt.progress import progress_bar

FORMAT = 2  # bump when the directory layout or a decode rule changes (invalidates staging)
_PLAN = "plan.json"  # under shards.WORK, with chunks/ and the fingerprint
_CHUNKS = "chunks"
_EXIF_ORIENTATION = 0x0112

# What a decoder raises on a file that is not a (complete) image.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass
class _Job:
    """What the worker processes need (inherited through fork, never pickled)."""

    records: list[Record]
    image_size: int
    directory: Path
    offsets: dict[str, int]  # where each split's pixel data starts in images_<split>.npy


_JOB: _Job | None = None
_FILES: dict[str, int] = {}  # split -> file descriptor open for writing (per process)


def _pixel_hash(image: Image.Image) -> str:
    digest = hashlib.sha256(f"{image.mode}:{image.size}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def describe_record(record: Record) -> dict[str, Any]:
    """Manifest fields known without decoding: sha256 (of a file's bytes, or of an in-memory
    image's mode, size and pixels) and bytes, or why the file is unusable."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(path=record.path, label=record.label, split=record.split, converted=False)
    if record.file is None:
        image = record.pixels()
        row["sha256"], row["bytes"] = _pixel_hash(image), len(image.tobytes())
        return row
    if not record.file.is_file():
        row["error"] = f"file not found: {record.file}"
        return row
    data = record.file.read_bytes()
    row["bytes"], row["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    if not data:
        row["error"] = "empty file (0 bytes)"
    return row


def decode_record(record: Record, image_size: int) -> tuple[dict[str, Any], np.ndarray | None]:
    """(width, height, mode, converted, exif_rotated, error) and (size, size, 3) uint8 pixels."""
    try:
        if record.file is None:
            return _convert(record.pixels(), image_size)
        with Image.open(record.file) as image:  # by path: errors name the file, not a buffer
            image.load()
            return _convert(image, image_size)
    except _DECODE_ERRORS as error:
        fields = {"converted": False, "exif_rotated": False}
        return fields | {"error": f"cannot decode: {type(error).__name__}: {error}"}, None


def _convert(image: Image.Image, image_size: int) -> tuple[dict[str, Any], np.ndarray]:
    rotated = image.getexif().get(_EXIF_ORIENTATION, 1) in range(2, 9)
    fields = {"width": image.size[0], "height": image.size[1], "mode": image.mode}
    rgb, converted = to_rgb(image)
    fields |= {"converted": bool(converted or rotated), "exif_rotated": rotated, "error": None}
    return fields, fit(rgb, image_size)


def _describe_chunk(indices: list[int]) -> list[dict[str, Any]]:
    return [describe_record(_JOB.records[i]) for i in indices]


def _shard(split: str) -> int:
    if split not in _FILES:
        _FILES[split] = os.open(_JOB.directory / f"images_{split}.npy", os.O_WRONLY)
    return _FILES[split]


def _close_files() -> None:
    for descriptor in _FILES.values():
        os.close(descriptor)
    _FILES.clear()


def _decode_chunk(chunk: tuple[int, list[list]]) -> tuple[int, list[dict[str, Any]]]:
    """Decode a chunk of (record index, split or None, row) into the shards; sync; report."""
    number, items = chunk
    results, touched = [], set()
    for index, split, row in items:
        fields, pixels = decode_record(_JOB.records[index], _JOB.image_size)
        if split is not None and pixels is not None:
            offset = _JOB.offsets[split] + row * pixels.nbytes
            os.pwrite(_shard(split), np.ascontiguousarray(pixels).data, offset)
            touched.add(split)
        results.append(fields)
    for split in touched:
        os.fdatasync(_shard(split))
    return number, results


def _fingerprint(
    source: SourceData, image_size: int, fractions: Mapping[str, float], seed: int
) -> str:
    """What the directory's content depends on: records (with file size and mtime) and params."""
    digest = hashlib.sha256()
    head = {"format": FORMAT, "size": image_size, "fractions": dict(fractions), "seed": seed}
    head |= {"classes": list(source.classes), "origin": source.origin, "info": source.info}
    digest.update(json.dumps(head, sort_keys=True, default=str).encode())
    for record in source.records:
        stat = None
        if record.file is not None and record.file.is_file():
            info = record.file.stat()
            stat = (info.st_size, info.st_mtime_ns)
        digest.update(json.dumps([record.path, record.label, record.split, stat]).encode())
    return digest.hexdigest()


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _run(function, tasks: Iterable, num_workers: int) -> Iterator:
    """`function` over `tasks`, in order, in `num_workers` forked processes (1: this one)."""
    if num_workers <= 1:
        yield from map(function, tasks)
        return
    with multiprocessing.get_context("fork").Pool(num_workers) as pool:
        yield from pool.imap(function, tasks)


def _plan(
    source: SourceData,
    fractions: Mapping[str, float],
    seed: int,
    num_workers: int,
    chunk_size: int,
) -> dict[str, Any]:
    """Rows in manifest order with their split and shard row (pass 1: hashing)."""
    chunks = _chunks(list(range(len(source.records))), chunk_size)
    rows = [row for part in _run(_describe_chunk, chunks, num_workers) for row in part]
    keys = [r["sha256"] or f"path:{r['path']}" for r in rows]
    given = [r["split"] for r in rows]
    splits = assign_splits(keys, [r["label"] for r in rows], given, fractions, seed)
    for index, (row, split) in enumerate(zip(rows, splits, strict=True)):
        row["split"], row["record"] = split, index
    rank = {s: i for i, s in enumerate(shards.SPLITS)}
    rows.sort(key=lambda r: (rank.get(r["split"], len(rank)), r["path"]))
    classes = set(source.classes)
    sizes = dict.fromkeys(shards.SPLITS, 0)
    for row in rows:
        if row["split"] in sizes and row["error"] is None and row["label"] in classes:
            row["shard_index"] = sizes[row["split"]]
            sizes[row["split"]] += 1
    return {"rows": rows, "sizes": sizes}


def _allocate(directory: Path, sizes: Mapping[str, int], image_size: int) -> dict[str, int]:
    """Create every split's images file at its full size (zero-filled, sparse); its offsets."""
    offsets = {}
    for split, n in sizes.items():
        path = directory / f"images_{split}.npy"
        shape = (n, image_size, image_size, 3)
        if n == 0:  # an empty file cannot be memory-mapped
            shards.save_array(path, np.zeros(shape, np.uint8))
            offsets[split] = path.stat().st_size
        else:
            created = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
            offsets[split] = created.offset
            del created
    return offsets


def _prepare(directory: Path, fingerprint: str) -> None:
    """Keep the directory's finished work if it was started for the same input, else empty it."""
    work = directory / shards.WORK
    mark = work / "fingerprint"
    if mark.is_file() and mark.read_text() == fingerprint:
        return
    shutil.rmtree(directory, ignore_errors=True)
    (work / _CHUNKS).mkdir(parents=True)
    mark.write_text(fingerprint)


def ingest(
    source: SourceData,
    image_size: int,
    fractions: Mapping[str, float],
    seed: int,
    directory: str | Path,
    num_workers: int = 1,
    chunk_size: int = 256,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Build (or resume) the shard directory of `source` at `directory`; (manifest, report).
    Rows with a label or split outside the lists stay out of the shards for validation to
    report; the result does not depend on `num_workers` or `chunk_size`."""
    global _JOB
    directory = Path(directory)
    with staging.exclusive(directory):
        _prepare(directory, _fingerprint(source, image_size, fractions, seed))
        _JOB = _Job(source.records, image_size, directory, offsets={})
        try:
            plan = _load_plan(
                directory, source, image_size, fractions, seed, num_workers, chunk_size
            )
            rows, _JOB.offsets = plan["rows"], plan["offsets"]
            chunks = _chunks([_item(row) for row in rows if row["error"] is None], chunk_size)
            done = _finished_chunks(directory, len(chunks))
            resumed = len(done)
            _decode(directory, chunks, done, num_workers)
        finally:
            _JOB = None
            _close_files()
        decoded = iter(fields for k in range(len(chunks)) for fields in done[k])
        for row in rows:
            if row["error"] is None:
                row.update(next(decoded))
        return _finish(directory, rows, source, image_size, resumed)


def _load_plan(
    directory: Path,
    source: SourceData,
    image_size: int,
    fractions: Mapping[str, float],
    seed: int,
    num_workers: int,
    chunk_size: int,
) -> dict[str, Any]:
    """The saved plan of a resumed ingestion, else a new one with its shard files allocated."""
    path = directory / shards.WORK / _PLAN
    if path.is_file():
        return json.loads(path.read_text())
    plan = _plan(source, fractions, seed, num_workers, chunk_size)
    plan["offsets"] = _allocate(directory, plan["sizes"], image_size)
    shards.write_json(path, plan)
    return plan


def _item(row: dict[str, Any]) -> list:
    """[record index, split (None: the image stays out of the shards), shard row]."""
    in_shards = row["shard_index"] is not None
    return [row["record"], row["split"] if in_shards else None, row["shard_index"]]


def _decode(directory: Path, chunks: list[list], done: dict[int, list], num_workers: int) -> None:
    """Decode the chunks not yet `done` into the shards, recording each once it is synced."""
    todo = [(k, chunk) for k, chunk in enumerate(chunks) if k not in done]
    total = sum(map(len, chunks))
    with progress_bar(total=total, desc="ingest", unit="img", mininterval=2.0) as bar:
        bar.update(sum(len(chunks[k]) for k in done))
        for number, results in _run(_decode_chunk, todo, num_workers):
            shards.write_json(directory / shards.WORK / _CHUNKS / f"{number}.json", results)
            done[number] = results
            bar.update(len(results))


def _finished_chunks(directory: Path, count: int) -> dict[int, list[dict[str, Any]]]:
    paths = {k: directory / shards.WORK / _CHUNKS / f"{k}.json" for k in range(count)}
    return {k: json.loads(path.read_text()) for k, path in paths.items() if path.is_file()}


def _finish(
    directory: Path, rows: list[dict], source: SourceData, image_size: int, resumed: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Labels (-1 where an image failed to decode), classes, manifest, then dataset.json."""
    class_index = {name: i for i, name in enumerate(source.classes)}
    labels = {s: [] for s in shards.SPLITS}
    for row in rows:
        if row["shard_index"] is not None:
            failed = row["error"] is not None
            labels[row["split"]].append(-1 if failed else class_index[row["label"]])
            if failed:
                row["shard_index"] = None
    for split, values in labels.items():
        shards.save_array(directory / f"labels_{split}.npy", np.array(values, dtype=np.int64))
    shards.write_classes(directory, source.classes)
    manifest = pd.DataFrame(rows, columns=list(COLUMNS))
    manifest["shard_index"] = manifest["shard_index"].astype("Int64")
    tmp = directory / f".{shards.MANIFEST}.tmp"
    manifest.to_csv(tmp, index=False)
    tmp.replace(directory / shards.MANIFEST)
    shards.write_info(directory, content_hash(manifest, source.classes), image_size)
    report = _report(manifest, source, image_size)
    report["conversions"]["exif_orientation"] = sum(bool(r.get("exif_rotated")) for r in rows)
    report["chunks_resumed"] = resumed
    return manifest, report


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
