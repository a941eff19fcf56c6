"""`digits`: scikit-learn's bundled handwritten digits (1,797 real 8x8 images, no network)."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from visprompt.data.sources.base import Record, SourceData, array_loader


def load() -> SourceData:
    """The 8x8 grayscale digits as uint8 (0..16 scaled to 0..255); ingestion upscales them."""
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    classes = [str(c) for c in bunch.target_names]
    records = [
        Record(path=f"digits/{i:04d}", label=classes[int(t)], pixels=array_loader(images[i]))
        for i, t in enumerate(bunch.target)
    ]
    return SourceData(records=records, classes=classes, origin="sklearn.datasets.load_digits")
