"""`idx`: the four idx files of MNIST-style datasets (Fashion-MNIST, MNIST, KMNIST) from a
local folder, gzip-compressed (as the Debian package `dataset-fashion-mnist` ships them in
/usr/share/datasets/fashion-mnist) or not. Nothing is downloaded."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from visprompt.data.sources.base import Record, SourceData, array_loader

#: Our split -> (images file, labels file), without the optional `.gz`.
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: Class names of known datasets by label index (`classes` may also be a list).
CLASS_NAMES = {
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "mnist": [str(i) for i in range(10)],
}

_DTYPES = {0x08: np.uint8}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (`.gz` or plain) as an array: magic 0,0,dtype,ndim; big-endian dims; data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(f"{path}: not an unsigned-byte idx file (bad magic {data[:4]!r})")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = data[4 + 4 * ndim :]
    if len(body) != int(np.prod(dims)):
        raise ValueError(
            f"{path}: header says {dims} ({int(np.prod(dims))} bytes) but holds {len(body)}: "
            "a truncated or corrupt copy"
        )
    return np.frombuffer(body, dtype=_DTYPES[data[2]]).reshape(dims)


def _find(root: Path, stem: str) -> Path | None:
    return next((root / n for n in (stem, f"{stem}.gz") if (root / n).is_file()), None)


def _missing_error(root: Path, missing: list[str]) -> FileNotFoundError:
    expected = ", ".join(f"{s}[.gz]" for pair in FILES.values() for s in pair)
    return FileNotFoundError(
        f"idx source: {missing} not found in {root} (expected the four files {expected}). "
        "Get them with `apt-get install dataset-fashion-mnist` (`dpkg -L dataset-fashion-mnist` "
        "shows the folder, /usr/share/datasets/fashion-mnist) or copy any set of the four idx "
        "files there, and set data_ingestion.sources.idx.root to that folder."
    )


def load(root: str, classes: str | list[str] = "fashion_mnist") -> SourceData:
    """Train and test records from `root`; `classes`: a name in CLASS_NAMES or the list."""
    folder = Path(root).expanduser()
    names = CLASS_NAMES.get(classes) if isinstance(classes, str) else [str(c) for c in classes]
    if names is None:
        raise ValueError(
            f"idx source: unknown classes '{classes}'; use one of {sorted(CLASS_NAMES)} or a list"
        )
    found = {stem: _find(folder, stem) for pair in FILES.values() for stem in pair}
    missing = [stem for stem, path in found.items() if path is None]
    if missing:
        raise _missing_error(folder, missing)
    records: list[Record] = []
    for split, (image_stem, label_stem) in FILES.items():
        images, labels = read_idx(found[image_stem]), read_idx(found[label_stem])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"idx source: {found[image_stem]} {images.shape} and {found[label_stem]} "
                f"{labels.shape} are not N images (N, H, W) with N labels"
            )
        if labels.size and int(labels.max()) >= len(names):
            raise ValueError(
                f"idx source: {found[label_stem]} has label {int(labels.max())} but only "
                f"{len(names)} class names; set data_ingestion.sources.idx.classes"
            )
        records += [
            Record(
                path=f"{split}/{i:05d}",
                label=names[int(label)],
                split=split,
                pixels=array_loader(images[i]),
            )
            for i, label in enumerate(labels)
        ]
    return SourceData(records=records, classes=list(names), origin=f"idx:{folder}")
