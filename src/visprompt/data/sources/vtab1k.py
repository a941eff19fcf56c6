"""`vtab1k`: the VTAB-1k protocol over any other source, so a suite task is one ingestion.

From the wrapped source's train split (all its records when it has no split) a seeded,
stratified sample of `train + val` images (800 + 200 in VTAB-1k) is drawn and split,
stratified again, into train and val. Test is the source's test split, or, for a source
without one, every record left out of the sample; `test: n` keeps a seeded, stratified
subset of n of those (a fixed subset where the full test split is too slow on a CPU). The
records come back with their split set, so ingestion keeps the splits as given.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from visprompt.data.sources.base import SourceData
from visprompt.data.sources.subset import largest_remainder


def _stratified(
    indices: Sequence[int], labels: Sequence[str], count: int, rng: np.random.Generator
) -> list[int]:
    """`count` of `indices`, each class in proportion (largest remainder), drawn by `rng`."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        groups[labels[i]].append(i)
    exact = {label: count * len(group) / len(indices) for label, group in groups.items()}
    quota = largest_remainder(exact, count, rank=lambda label: label)
    chosen = []
    for label in sorted(groups):
        chosen += rng.permutation(groups[label])[: quota[label]].tolist()
    return sorted(chosen)


def protocol_splits(
    labels: Sequence[str],
    splits: Sequence[str | None],
    train: int = 800,
    val: int = 200,
    test: int | None = None,
    seed: int = 0,
    where: str = "vtab1k",
) -> list[str | None]:
    """The protocol's split of each record (None: not used), from the records' labels and
    given splits (`train`/`test`/None). Seeded: the same inputs give the same splits."""
    given = set(splits) - {None}
    if given - {"train", "val", "test"}:
        raise ValueError(f"{where}: unknown split(s) {sorted(given - {'train', 'val', 'test'})}")
    pool = [i for i, s in enumerate(splits) if s == ("train" if given else None)]
    if train < 1 or val < 1 or len(pool) < train + val:
        raise ValueError(
            f"{where}: train {train} + val {val} images are drawn from the source's "
            f"{'train split' if given else 'records'}, which holds {len(pool)}: lower "
            f"{where}.train/val or choose a larger source"
        )
    rng = np.random.default_rng(int(seed))
    sample = _stratified(pool, labels, train + val, rng)
    result: list[str | None] = [None] * len(labels)
    for i in _stratified(sample, labels, val, rng):
        result[i] = "val"
    for i in sample:
        result[i] = result[i] or "train"
    taken = set(sample)
    rest = [i for i, s in enumerate(splits) if (s == "test" if given else i not in taken)]
    if test is not None:
        if not 1 <= int(test) <= len(rest):
            raise ValueError(
                f"{where}.test = {test}: the test split holds {len(rest)} images; choose 1 to "
                f"{len(rest)}, or null for all of them"
            )
        rest = _stratified(rest, labels, int(test), rng)
    for i in rest:
        result[i] = "test"
    return result


def load(
    source: str,
    options: Mapping[str, Any] | None = None,
    train: int = 800,
    val: int = 200,
    test: int | None = None,
    seed: int = 0,
) -> SourceData:
    """Source `source` (with its `options`) under the VTAB-1k protocol (module docstring)."""
    from visprompt.data.sources import load_source  # the registry imports this module

    if source == "vtab1k":
        raise ValueError("vtab1k: `source` names the wrapped source, not vtab1k itself")
    data = load_source(source, dict(options or {}))
    labels = [record.label for record in data.records]
    splits = protocol_splits(
        labels, [record.split for record in data.records], train, val, test, seed,
        where=f"sources.vtab1k ({source})",
    )  # fmt: skip
    records = [
        replace(record, split=split)
        for record, split in zip(data.records, splits, strict=True)
        if split is not None
    ]
    counts = {s: splits.count(s) for s in ("train", "val", "test")}
    protocol = {"source": source, "train": train, "val": val, "test": test, "seed": int(seed)}
    info = {**data.info, "vtab1k": protocol | {"counts": counts}}
    origin = f"vtab1k:{data.origin}"
    return SourceData(records=records, classes=data.classes, origin=origin, info=info)
