"""`animal_mnist`: Animal-MNIST silhouettes (10,000 real 28x28 grayscale images, 10 animal
classes x 1,000) from the installed PyPI data wheel `animal-mnist` 0.4, whose files are gzip
pickles. A pickle runs code when loaded, so each file's sha256 is checked against the pinned
value BEFORE it is opened, and the unpickler accepts only numpy's array reconstruction: any
other file (a new wheel version, a tampered copy) is refused, never unpickled.

The arrays have no train/test split (one (10000, 28, 28) uint8 array and (10000,) int64 labels
0-9, 1,000 per class); the suite's protocol makes a seeded, stratified one (`vtab1k`). 284
images occur twice (same pixels, same label): only the first copy is kept (9,716 images), so
no image can land in two splits (data validation's `no_leakage` refused the data otherwise).
The wheel's description lists the animals alphabetically (Bear ... Zebra) without stating
that this is the label order, so the classes are named by their label index.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np

from visprompt.data.sources.base import Record, SourceData, array_loader

#: File -> pinned sha256 of animal-mnist 0.4 (data, labels).
FILES = {
    "animal_data_version_3.gz": "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce",
    "animal_label_version_3.gz": "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57",
}
FOLDER = ("data", "Animal_MNIST")
INSTALL = "pip install --no-deps animal-mnist==0.4 (`make install` does this)"
#: The only globals the pickles may name: numpy's ndarray reconstruction.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle's signature)
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only numpy arrays")
        return super().find_class(module, name)


def data_folder() -> Path:
    """The installed wheel's data folder; a missing package names the install line."""
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"animal_mnist source: the package is not installed; {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*FOLDER)


def read_verified(path: Path, sha256: str) -> np.ndarray:
    """The array in gzip pickle `path`, only if the file's sha256 is `sha256`."""
    if not path.is_file():
        raise FileNotFoundError(f"animal_mnist source: {path} is missing; {INSTALL}")
    raw = path.read_bytes()
    found = hashlib.sha256(raw).hexdigest()
    if found != sha256:
        raise ValueError(
            f"animal_mnist source: {path} has sha256 {found}, not the pinned {sha256}; refusing "
            f"to unpickle it (a pickle runs code). Reinstall the pinned wheel: {INSTALL}"
        )
    value = _ArrayUnpickler(io.BytesIO(gzip.decompress(raw))).load()
    if not isinstance(value, np.ndarray):
        raise ValueError(f"animal_mnist source: {path} holds {type(value).__name__}, not an array")
    return value


def load() -> SourceData:
    """10,000 silhouettes as uint8 28x28 records without a split, labels `class_0`..`class_9`."""
    folder = data_folder()
    data_name, label_name = FILES
    images = read_verified(folder / data_name, FILES[data_name])
    labels = read_verified(folder / label_name, FILES[label_name])
    shape_ok = images.shape[1:] == (28, 28) and labels.shape == (len(images),)
    if not shape_ok or images.dtype != np.uint8:
        raise ValueError(
            f"animal_mnist source: arrays {images.shape} {images.dtype} and {labels.shape} are "
            "not N uint8 28x28 images with N labels"
        )
    classes = [f"class_{i}" for i in range(int(labels.max()) + 1)]
    first: dict[bytes, int] = {}
    for i, image in enumerate(images):
        first.setdefault(hashlib.sha256(image.tobytes()).digest(), i)
    kept = sorted(first.values())
    records = [
        Record(
            path=f"animal_mnist/{i:05d}",
            label=classes[int(labels[i])],
            pixels=array_loader(images[i]),
        )
        for i in kept
    ]
    info = {"duplicates_dropped": len(images) - len(kept)}
    origin = f"animal-mnist 0.4:{data_name}"
    return SourceData(records=records, classes=classes, origin=origin, info=info)
