"""A seeded, stratified subset of any source's records, so a user can start small.

Every source takes `subset: {max_per_class: N, per_split: {train: n, ...}, seed: S}`, applied
before any image is decoded: `max_per_class` caps each class within each split; `per_split`
keeps n records of a split in its class proportions; other splits keep everything. Records
without a split are the split `all`. Same records + same options -> same subset, in order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from visprompt.data.sources.base import Record, SourceData

OPTIONS = ("max_per_class", "per_split", "seed")
UNSPLIT = "all"


def _split(record: Record) -> str:
    return record.split or UNSPLIT


def largest_remainder(
    exact: Mapping[str, float], total: int, rank: Callable[[str], Any]
) -> dict[str, int]:
    """`total` places over the `exact` shares (which sum to `total`): each gets its floor, the
    largest remainders (ties by `rank`) one place more."""
    counts = {key: int(share) for key, share in exact.items()}
    order = sorted(exact, key=lambda key: (-(exact[key] - counts[key]), rank(key)))
    for key in order[: total - sum(counts.values())]:
        counts[key] += 1
    return counts


def take_subset(
    data: SourceData,
    max_per_class: int | None = None,
    per_split: Mapping[str, int] | None = None,
    seed: int = 0,
    where: str = "subset",
) -> SourceData:
    """The seeded, stratified subset of `data` (see the module docstring)."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, record in enumerate(data.records):
        groups[(_split(record), record.label)].append(i)
    if max_per_class is not None and int(max_per_class) < 1:
        raise ValueError(f"{where}.max_per_class must be >= 1; got {max_per_class}")
    per_split = dict(per_split or {})
    splits = sorted({split for split, _ in groups})
    unknown = sorted(set(per_split) - set(splits))
    if unknown:
        raise ValueError(f"{where}.per_split names split(s) {unknown}; the source has {splits}")
    rng = np.random.default_rng(int(seed))
    order = {key: rng.permutation(groups[key]).tolist() for key in sorted(groups)}
    if max_per_class is not None:
        order = {key: idx[: int(max_per_class)] for key, idx in order.items()}
    for split, wanted in per_split.items():
        counts = {label: len(idx) for (s, label), idx in order.items() if s == split}
        if not 1 <= int(wanted) <= sum(counts.values()):
            raise ValueError(
                f"{where}.per_split.{split} = {wanted}: choose 1 to {sum(counts.values())} "
                f"(the {split} records available{' after max_per_class' * bool(max_per_class)})"
            )
        available, total = sum(counts.values()), int(wanted)
        exact = {label: total * c / available for label, c in counts.items()}
        for label, quota in largest_remainder(exact, total, rank=lambda label: label).items():
            order[(split, label)] = order[(split, label)][:quota]
    keep = sorted(i for idx in order.values() for i in idx)
    chosen = {
        "max_per_class": max_per_class,
        "per_split": per_split,
        "seed": int(seed),
        "records": len(keep),
        "of": len(data.records),
    }
    return replace(
        data, records=[data.records[i] for i in keep], info={**data.info, "subset": chosen}
    )


def subset_from_options(data: SourceData, options: Mapping | None, where: str) -> SourceData:
    """`take_subset` from a config mapping; unknown keys are an error naming the valid ones."""
    if not options:
        return data
    if not isinstance(options, Mapping):
        raise ValueError(f"{where} must be a mapping with keys {list(OPTIONS)}; got {options!r}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} in {where}; valid: {list(OPTIONS)}")
    return take_subset(data, **options, where=where)
