from collections import Counter

import pytest

from visprompt.data.splits import assign_splits, stratified_split

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def _items(per_class: int, classes=("a", "b", "c")):
    keys = [f"{c}{i}" for c in classes for i in range(per_class)]
    labels = [c for c in classes for _ in range(per_class)]
    return keys, labels


def test_stratified_counts_per_class():
    keys, labels = _items(20)
    splits = stratified_split(keys, labels, FRACTIONS, seed=0)
    for c in "abc":
        counts = Counter(s for s, lab in zip(splits, labels, strict=True) if lab == c)
        assert counts == {"train": 14, "val": 3, "test": 3}


def test_deterministic_and_seed_dependent():
    keys, labels = _items(20)
    first = stratified_split(keys, labels, FRACTIONS, seed=1)
    assert first == stratified_split(keys, labels, FRACTIONS, seed=1)
    assert first != stratified_split(keys, labels, FRACTIONS, seed=2)


def test_order_independent_and_stable_when_adding_images():
    keys, labels = _items(20)
    base = dict(zip(keys, stratified_split(keys, labels, FRACTIONS, seed=0), strict=True))
    rev = stratified_split(keys[::-1], labels[::-1], FRACTIONS, seed=0)
    assert dict(zip(keys[::-1], rev, strict=True)) == base
    more_keys, more_labels = [*keys, "a_new"], [*labels, "a"]
    grown = dict(
        zip(more_keys, stratified_split(more_keys, more_labels, FRACTIONS, 0), strict=True)
    )
    moved = [k for k in keys if grown[k] != base[k]]
    assert len(moved) <= 2 and all(k.startswith("a") for k in moved)  # one per boundary


def test_copies_share_a_split():
    keys = ["same"] * 3 + [f"k{i}" for i in range(30)]
    labels = ["a"] * 33
    splits = stratified_split(keys, labels, FRACTIONS, seed=3)
    assert len(set(splits[:3])) == 1


def test_given_splits_kept_and_val_carved_from_train():
    keys, labels = _items(20)
    given = ["train" if i % 5 else "test" for i in range(len(keys))]
    splits = assign_splits(keys, labels, given, FRACTIONS, seed=0)
    for g, s in zip(given, splits, strict=True):
        assert s == "test" if g == "test" else s in ("train", "val")
    train_part = sum(g == "train" for g in given)  # 48: 16 per class
    carved = Counter(s for s in splits if s in ("train", "val"))
    assert carved["val"] == pytest.approx(train_part * 0.15 / 0.85, abs=3)
    assert carved["val"] > 0


def test_unsplit_source_gets_all_three():
    keys, labels = _items(10)
    splits = assign_splits(keys, labels, [None] * len(keys), FRACTIONS, seed=0)
    assert set(splits) == {"train", "val", "test"}


@pytest.mark.parametrize("fractions", [{"train": -1}, {"holdout": 1.0}, {"train": 0.0}, {}])
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ValueError, match="fractions"):
        stratified_split(["a"], ["x"], fractions, seed=0)
