"""The VTAB-1k protocol (`vtab1k` source): seeded, stratified, disjoint train/val/test."""

from __future__ import annotations

from collections import Counter

import pytest

from visprompt.data.sources import load_source
from visprompt.data.sources.vtab1k import protocol_splits


def _unsplit(counts: dict[str, int]) -> tuple[list[str], list[None]]:
    labels = [label for label, n in counts.items() for _ in range(n)]
    return labels, [None] * len(labels)


def _per_class(labels: list[str], splits: list[str | None], split: str) -> dict[str, int]:
    return dict(Counter(label for label, s in zip(labels, splits, strict=True) if s == split))


def test_exact_800_200_stratified_and_the_test_subset() -> None:
    labels, given = _unsplit({str(c): 500 for c in range(10)})
    splits = protocol_splits(labels, given, train=800, val=200, test=2000, seed=0)
    assert Counter(splits) == {"train": 800, "val": 200, "test": 2000, None: 2000}
    assert _per_class(labels, splits, "train") == {str(c): 80 for c in range(10)}
    assert _per_class(labels, splits, "val") == {str(c): 20 for c in range(10)}
    assert _per_class(labels, splits, "test") == {str(c): 200 for c in range(10)}


def test_imbalanced_classes_keep_their_proportions() -> None:
    labels, given = _unsplit({"a": 1200, "b": 600, "c": 200})
    splits = protocol_splits(labels, given, train=800, val=200, seed=3)
    assert _per_class(labels, splits, "train") == {"a": 480, "b": 240, "c": 80}
    assert _per_class(labels, splits, "val") == {"a": 120, "b": 60, "c": 20}
    # no test split given: every record outside the sample is test
    assert Counter(splits)["test"] == 1000 and None not in splits


def test_seeded_same_seed_same_splits_other_seed_other_sample() -> None:
    labels, given = _unsplit({str(c): 150 for c in range(10)})
    first = protocol_splits(labels, given, train=800, val=200, seed=1)
    assert protocol_splits(labels, given, train=800, val=200, seed=1) == first
    other = protocol_splits(labels, given, train=800, val=200, seed=2)
    assert other != first
    assert Counter(other) == Counter(first)


def test_a_source_with_a_test_split_samples_train_only_and_keeps_test_disjoint() -> None:
    labels = [str(i % 4) for i in range(2000)]
    given = ["train"] * 1500 + ["test"] * 500
    splits = protocol_splits(labels, given, train=80, val=20, seed=0)
    sampled = {i for i, s in enumerate(splits) if s in ("train", "val")}
    tested = {i for i, s in enumerate(splits) if s == "test"}
    assert sampled <= set(range(1500)) and len(sampled) == 100
    assert tested == set(range(1500, 2000))  # the whole test split, nothing of train
    assert Counter(splits)[None] == 1400  # unsampled train records are not used


def test_a_task_too_small_is_a_clear_error() -> None:
    labels, given = _unsplit({"a": 450, "b": 450})
    with pytest.raises(ValueError, match=r"train 800 \+ val 200 .* holds 900: lower"):
        protocol_splits(labels, given, train=800, val=200, where="sources.vtab1k (x)")
    with pytest.raises(ValueError, match=r"test = 5000: the test split holds 1800"):
        labels, given = _unsplit({"a": 1400, "b": 1400})
        protocol_splits(labels, given, train=800, val=200, test=5000)


def test_the_vtab1k_source_wraps_a_real_source() -> None:
    data = load_source("vtab1k", {"source": "digits", "train": 800, "val": 200, "seed": 0})
    assert Counter(r.split for r in data.records) == {"train": 800, "val": 200, "test": 797}
    assert len({r.path for r in data.records}) == 1797  # disjoint: every image once
    assert data.info["vtab1k"]["counts"] == {"train": 800, "val": 200, "test": 797}
    assert data.origin == "vtab1k:sklearn.datasets.load_digits"
    with pytest.raises(ValueError, match="names the wrapped source"):
        load_source("vtab1k", {"source": "vtab1k"})
