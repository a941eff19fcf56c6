"""The suite's new sources on the real installed data, and Animal-MNIST's sha256 gate."""

from __future__ import annotations

import gzip
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from visprompt.data.sources import animal_mnist, load_source


def test_mnist5k_reads_mlxtends_5000_digits() -> None:
    data = load_source("mnist5k")
    assert len(data.records) == 5000 and data.classes == [str(i) for i in range(10)]
    assert sum(Counter(r.label for r in data.records).values()) == 5000
    assert len(Counter(r.label for r in data.records)) == 10
    image = data.records[0].pixels()
    assert image.size == (28, 28) and image.mode == "L"
    assert np.asarray(image).max() > 200  # real ink, not an empty array


def test_animal_mnist_reads_the_verified_wheel() -> None:
    data = load_source("animal_mnist")
    # 10,000 images, 1,000 per class, of which 284 are second copies of another: dropped
    assert len(data.records) == 9_716 and data.info == {"duplicates_dropped": 284}
    counts = Counter(r.label for r in data.records)
    assert sorted(counts) == [f"class_{i}" for i in range(10)]
    assert counts["class_1"] == 1000 - 188 and counts["class_5"] == 1000
    pixels = {r.pixels().tobytes() for r in data.records}
    assert len(pixels) == len(data.records)  # every image once
    assert all(r.split is None for r in data.records)  # no split: the protocol makes one
    assert data.records[0].pixels().size == (28, 28)


class _Payload:
    """Unpickling this creates `marker` (what a hostile pickle could do instead)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (open, (str(self.marker), "w"))


def _hostile(folder: Path) -> tuple[Path, Path]:
    marker = folder / "unpickled"
    path = folder / "animal_data_version_3.gz"
    path.write_bytes(gzip.compress(pickle.dumps(_Payload(marker))))
    return path, marker


def test_a_file_with_another_sha256_is_refused_before_unpickling(tmp_path: Path) -> None:
    path, marker = _hostile(tmp_path)
    with pytest.raises(ValueError, match="not the pinned 68a30346.*refusing to unpickle"):
        animal_mnist.read_verified(path, animal_mnist.FILES[path.name])
    assert not marker.exists()


def test_even_a_matching_file_may_only_hold_numpy_arrays(tmp_path: Path) -> None:
    import hashlib

    path, marker = _hostile(tmp_path)
    own = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        animal_mnist.read_verified(path, own)
    assert not marker.exists()


def test_load_refuses_a_tampered_installed_copy(tmp_path: Path, monkeypatch) -> None:
    _hostile(tmp_path)
    monkeypatch.setattr(animal_mnist, "data_folder", lambda: tmp_path)
    with pytest.raises(ValueError, match="pip install --no-deps animal-mnist==0.4"):
        load_source("animal_mnist")
