"""Helpers that write small real image files for the data tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def image_bytes(mode: str = "RGB", size: tuple[int, int] = (16, 12), fmt: str = "PNG", seed=0):
    """Encoded bytes of a random image of `mode` (16-bit via I;16, palette via quantize)."""
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    elif mode == "P":
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).quantize(8)
    else:
        channels = {"L": None, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
        shape = (h, w) if channels is None else (h, w, channels)
        image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
