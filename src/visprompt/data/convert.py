"""Bring any decoded image to 8-bit RGB, then to the square shard size.

Counted as conversions: alpha (RGBA, LA, PA, palette with transparency) is composited onto
white, since dropping it turns transparent areas into arbitrary colours; 16/32-bit integer
grayscale is scaled by 1/257, since a plain conversion clips everything above 255 to white;
other modes use Pillow's RGB conversion.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


def to_rgb(image: Image.Image) -> tuple[Image.Image, bool]:
    """(RGB image, whether a conversion happened). EXIF orientation is applied first."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image, False
    if mode in _SIXTEEN_BIT:
        values = np.asarray(image, dtype=np.float64) / 257.0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB"), True
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB"), True
    return image.convert("RGB"), True


def fit(image: Image.Image, size: int) -> np.ndarray:
    """uint8 (size, size, 3): scale the shorter side to `size` (bicubic), centre-crop the rest."""
    resized = ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)
