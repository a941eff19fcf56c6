"""What every source yields: image records (a file to read, or pixels in memory) + class list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

# File extensions read as images by the folder-based sources (others are ignored).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


@dataclass(frozen=True)
class Record:
    """One image of a source: `path` as the manifest shows it, and exactly one of `file` (read
    by ingestion, which catches broken files) and `pixels` (a loader of a decoded image)."""

    path: str
    label: str
    split: str | None = None
    file: Path | None = None
    pixels: Callable[[], Image.Image] | None = None

    def __post_init__(self) -> None:
        if (self.file is None) == (self.pixels is None):
            raise ValueError(f"record '{self.path}': set exactly one of `file` and `pixels`")


@dataclass(frozen=True)
class SourceData:
    """Records of a source, its class list (label i is classes[i]) and where it came from."""

    records: list[Record]
    classes: list[str]
    origin: str
    info: dict = field(default_factory=dict)


def array_loader(array: np.ndarray) -> Callable[[], Image.Image]:
    """A `pixels` loader for a uint8 HxW or HxWx3 array (copied lazily into a PIL image)."""
    return lambda: Image.fromarray(array)
