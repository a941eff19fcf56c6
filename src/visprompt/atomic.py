"""Atomic writes: a reader sees the old content or the new one, never a half-written file/folder.

New content goes to a hidden sibling (`.<name>.tmp-<pid>`) renamed over the target; a folder
being replaced is first moved to `.<name>.old-<pid>`. The next write to the target removes the
leftovers of dead writers (restoring a folder a killed swap moved away), so a killed save never
blocks a later one. Content equal to the target's leaves it untouched, mtime included.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_directory", "atomic_path", "clean_leftovers", "write_bytes", "write_text"]


def _sibling(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not writing it now: a leftover of an aborted write
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_leftovers(path: str | Path) -> None:
    """Remove temporaries of dead writers of `path`; restore a folder a killed swap moved away."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(tmp|old)-(\d+)$")
    leftovers = []
    for sibling in path.parent.iterdir():
        match = pattern.match(sibling.name)
        if match and not _alive(int(match.group(2))):
            leftovers.append((match.group(1), sibling))
    if not path.exists():
        olds = [s for kind, s in leftovers if kind == "old"]
        if olds:  # killed between "move the old folder away" and "move the new one in"
            newest = max(olds, key=lambda s: s.stat().st_mtime)
            os.replace(newest, path)
            leftovers = [(k, s) for k, s in leftovers if s != newest]
    for _, sibling in leftovers:
        _remove(sibling)


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path (for writers that want one: `torch.save`, `to_csv`, ...)
    that replaces `path` in one rename when the block succeeds; else `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        if path.is_file() and filecmp.cmp(tmp, path, shallow=False):
            _remove(tmp)  # the same bytes: keep the file as it is
            return
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces folder `path` when the block succeeds
    (old one moved aside, new one in, old one deleted); else `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(path)
    tmp = _sibling(path, "tmp")
    _remove(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if _same_tree(tmp, path):
        _remove(tmp)  # the same files and bytes: keep the folder as it is
    elif path.exists():
        old = _sibling(path, "old")
        _remove(old)
        os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    else:
        os.replace(tmp, path)


def _same_tree(new: Path, old: Path) -> bool:
    """Whether folder `old` holds exactly the files of `new`, byte for byte."""
    if not old.is_dir():
        return False
    files = sorted(p.relative_to(new) for p in new.rglob("*") if p.is_file())
    if files != sorted(p.relative_to(old) for p in old.rglob("*") if p.is_file()):
        return False
    return all(filecmp.cmp(new / f, old / f, shallow=False) for f in files)
