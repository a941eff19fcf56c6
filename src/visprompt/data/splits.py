"""Deterministic, stratified, leakage-free split assignment.

Copies of an image (one content hash) share a split; groups are ranked by sha256(seed:hash),
so adding an image never reshuffles the others. Per class, the first groups go to test, the
next to val, the rest to train, in counts from the fractions (largest remainder).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from visprompt.data.shards import SPLITS
from visprompt.data.sources.subset import largest_remainder


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def stratified_split(
    keys: Sequence[str],
    labels: Sequence[str],
    fractions: Mapping[str, float],
    seed: int,
) -> list[str]:
    """The split of each item; items with the same key (content hash) share one split."""
    if len(keys) != len(labels):
        raise ValueError(f"{len(keys)} keys but {len(labels)} labels")
    unknown = set(fractions) - set(SPLITS)
    if unknown or not fractions or any(f < 0 for f in fractions.values()):
        raise ValueError(f"fractions must map splits of {SPLITS} to >= 0, got {dict(fractions)}")
    total = sum(fractions.values())
    if total <= 0:
        raise ValueError(f"fractions must not all be zero, got {dict(fractions)}")
    fractions = {s: fractions[s] / total for s in SPLITS if s in fractions}
    members: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        members[key].append(i)
    by_class: dict[str, list[str]] = defaultdict(list)
    for key, idx in members.items():
        votes = Counter(labels[i] for i in idx)
        label = min(votes, key=lambda lab: (-votes[lab], lab))  # majority, ties by name
        by_class[label].append(key)
    result = [""] * len(keys)
    fill_order = [s for s in ("test", "val", "train") if s in fractions]
    for _label, group_keys in sorted(by_class.items()):
        ranked = sorted(group_keys, key=lambda k: _rank(seed, k))
        exact = {s: len(ranked) * fractions[s] for s in fractions}
        counts = largest_remainder(exact, len(ranked), rank=SPLITS.index)
        start = 0
        for split in fill_order:
            for key in ranked[start : start + counts[split]]:
                for i in members[key]:
                    result[i] = split
            start += counts[split]
    return result


def assign_splits(
    keys: Sequence[str],
    labels: Sequence[str],
    given: Sequence[str | None],
    fractions: Mapping[str, float],
    seed: int,
) -> list[str | None]:
    """Keep splits a source gives; fill the rest.

    No split given anywhere: split everything by `fractions`. Else splits missing from the
    source are carved out of its train part in the proportions of `fractions` (a train/test
    source gets val = 15/85 of its train); items without a split stay None for validation.
    """
    if all(g is None for g in given):
        return list(stratified_split(keys, labels, fractions, seed))
    result: list[str | None] = list(given)
    missing = [s for s in SPLITS if s not in set(given) and s != "train"]
    train = [i for i, g in enumerate(given) if g == "train"]
    if missing and train:
        carve = {s: fractions.get(s, 0.0) for s in ["train", *missing]}
        carved = stratified_split([keys[i] for i in train], [labels[i] for i in train], carve, seed)
        for i, split in zip(train, carved, strict=True):
            result[i] = split
    return result
