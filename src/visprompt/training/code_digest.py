"""A digest of the package source that determines a training result.

A checkpoint or cached result is only valid for the code that produced it: editing a
method's forward pass, the loop, a backbone helper or the preprocessing must retrain. The
digest covers the source files a training run executes (not docs, not Kedro wiring), so
pure refactors elsewhere keep results while any change in those files invalidates them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

#: Package-relative folders and files whose code decides a trained model's numbers.
RESULT_CODE = ("methods", "training", "backbones.py", "data/transforms.py", "prompt_init")

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def source_files(root: Path = PACKAGE_ROOT, parts: Sequence[str] = RESULT_CODE) -> list[Path]:
    """The `.py` files under `parts` of the package at `root`, sorted by relative path."""
    files: set[Path] = set()
    for part in parts:
        path = root / part
        if path.is_dir():
            files |= set(path.rglob("*.py"))
        elif path.is_file():
            files.add(path)
        else:
            raise FileNotFoundError(f"code digest: {path} does not exist (RESULT_CODE: {part})")
    return sorted(files, key=lambda f: f.relative_to(root).as_posix())


def source_digest(root: Path = PACKAGE_ROOT, parts: Sequence[str] = RESULT_CODE) -> str:
    """sha256 over (relative path, bytes) of every file of `source_files`, in sorted order.

    The path is hashed too, so moving code between files changes the digest.
    """
    digest = hashlib.sha256()
    for file in source_files(root, parts):
        name = file.relative_to(root).as_posix().encode()
        data = file.read_bytes()
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()
