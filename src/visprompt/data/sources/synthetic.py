"""`synthetic`: procedurally drawn shapes with textures, deterministic by seed (no network).

A class is a (shape, texture) pair (up to 7 x 4 = 28 classes); position, scale, rotation,
colours, texture frequency, background and noise are random per image, so only shape and
texture carry the label: a small but non-trivial pretraining task for a tiny backbone.
"""

from __future__ import annotations

import numpy as np

from visprompt.data.sources.base import Record, SourceData, array_loader

SHAPES = ("disk", "ring", "square", "triangle", "cross", "star", "halfdisk")
TEXTURES = ("solid", "stripes", "checker", "dots")
MAX_CLASSES = len(SHAPES) * len(TEXTURES)  # CRT: (i % 7, i % 4) is unique for i < 28


def class_names(num_classes: int) -> list[str]:
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"synthetic num_classes must be in [2, {MAX_CLASSES}], got {num_classes}")
    return [f"{SHAPES[i % len(SHAPES)]}_{TEXTURES[i % len(TEXTURES)]}" for i in range(num_classes)]


def _signed_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) of a unit-sized shape in local coordinates."""
    r = np.hypot(u, v)
    if shape == "disk":
        return r - 1.0
    if shape == "ring":
        return np.abs(r - 0.72) - 0.28
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.8
    if shape == "triangle":
        return np.maximum(np.abs(u) * 0.866 + v * 0.5, -v) - 0.45
    if shape == "cross":
        bar_h = np.maximum(np.abs(u) - 1.0, np.abs(v) - 0.3)
        bar_v = np.maximum(np.abs(u) - 0.3, np.abs(v) - 1.0)
        return np.minimum(bar_h, bar_v)
    if shape == "star":
        return r - (0.62 + 0.38 * np.cos(5.0 * np.arctan2(v, u)))
    if shape == "halfdisk":
        return np.maximum(r - 1.0, v)
    raise ValueError(f"unknown shape '{shape}'")


def _texture(name: str, x: np.ndarray, y: np.ndarray, freq: float, phase: float) -> np.ndarray:
    """Pattern in [0, 1] (1 = primary colour) over rotated coordinates x, y."""
    sx, sy = np.sin(np.pi * freq * x + phase), np.sin(np.pi * freq * y + phase)
    if name == "solid":
        return np.ones_like(x)
    if name == "stripes":
        return (sx > 0).astype(np.float64)
    if name == "checker":
        return (sx * sy > 0).astype(np.float64)
    if name == "dots":
        return (sx * sy < 0.45).astype(np.float64)
    raise ValueError(f"unknown texture '{name}'")


def _rotate(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    return c * x + s * y, -s * x + c * y


def _draw(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    shape, texture = SHAPES[label % len(SHAPES)], TEXTURES[label % len(TEXTURES)]
    axis = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    # Colours: foreground and background far enough apart to keep the shape visible.
    while True:
        fg, bg = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if np.abs(fg - bg).mean() > 70:
            break
    # Background: faint random pattern so edges exist outside the shape too.
    bx, by = _rotate(xx, yy, rng.uniform(0, np.pi))
    bg_pattern = _texture(
        TEXTURES[rng.integers(1, len(TEXTURES))], bx, by, rng.uniform(2, 5), rng.uniform(0, 6.3)
    )
    image = bg * (0.85 + 0.15 * bg_pattern[..., None])
    # Shape with its texture, anti-aliased over about one pixel.
    scale = rng.uniform(0.45, 0.8)
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    u, v = _rotate((xx - cx) / scale, (yy - cy) / scale, rng.uniform(0, 2 * np.pi))
    alpha = np.clip(0.5 - _signed_distance(shape, u, v) * scale * size / 2.0, 0.0, 1.0)
    tx, ty = _rotate(xx, yy, rng.uniform(0, np.pi))
    pattern = _texture(texture, tx, ty, rng.uniform(3.5, 6.0), rng.uniform(0, 6.3))
    foreground = fg * (0.3 + 0.7 * pattern[..., None])
    image = image * (1 - alpha[..., None]) + foreground * alpha[..., None]
    image += rng.normal(0.0, 6.0, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def generate(
    num_classes: int, num_images: int, image_size: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 NHWC RGB images, int64 labels, class names); balanced, identical for a seed."""
    names = class_names(num_classes)
    if num_images < num_classes:
        raise ValueError(f"num_images ({num_images}) must be >= num_classes ({num_classes})")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num_images) % num_classes).astype(np.int64)
    images = np.stack([_draw(int(label), image_size, rng) for label in labels])
    return images, labels, names


def load(
    num_classes: int = 10, num_images: int = 600, image_size: int = 32, seed: int = 0
) -> SourceData:
    images, labels, names = generate(num_classes, num_images, image_size, seed)
    records = [
        Record(path=f"synthetic/{i:05d}", label=names[int(t)], pixels=array_loader(images[i]))
        for i, t in enumerate(labels)
    ]
    return SourceData(
        records=records,
        classes=names,
        origin=f"synthetic(seed={seed})",
        info={"num_classes": num_classes, "num_images": num_images, "seed": seed},
    )
