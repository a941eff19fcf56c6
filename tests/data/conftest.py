"""Fixtures for the data tests: image folders with good and broken files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the tests import image_kit

from image_kit import image_bytes, write  # noqa: E402


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    """An imagefolder with one file of every bad kind next to good ones.

    cats: 4 good RGB PNGs, a corrupt JPEG, a truncated PNG, an empty file, a text file
    named .jpg, a 1x1 image; dogs: a grayscale, an RGBA, a 16-bit PNG and 2 good ones;
    birds: an empty class folder.
    """
    root = tmp_path / "images"
    for i in range(4):
        write(root / "cats" / f"good{i}.png", image_bytes(seed=i))
    jpeg = image_bytes(fmt="JPEG", size=(32, 32), seed=9)
    write(root / "cats" / "corrupt.jpg", jpeg[:20] + bytes(range(256)) * 4)
    write(root / "cats" / "truncated.png", image_bytes(seed=10)[:100])
    write(root / "cats" / "empty.png", b"")
    write(root / "cats" / "notes.jpg", b"this is a text file, not an image\n")
    write(root / "cats" / "tiny.png", image_bytes(size=(1, 1), seed=11))
    write(root / "dogs" / "gray.png", image_bytes("L", seed=12))
    write(root / "dogs" / "alpha.png", image_bytes("RGBA", seed=13))
    write(root / "dogs" / "deep.png", image_bytes("I;16", seed=14))
    write(root / "dogs" / "good0.png", image_bytes(seed=15))
    write(root / "dogs" / "good1.png", image_bytes(seed=16))
    (root / "birds").mkdir()
    (root / "cats" / "README.txt").write_text("not an image extension: ignored")
    return root
