"""`imagefolder`: root/<class>/<image> or root/<split>/<class>/<image>."""

from __future__ import annotations

import os
from pathlib import Path

from visprompt.data.shards import SPLITS
from visprompt.data.sources.base import IMAGE_EXTENSIONS, Record, SourceData


def _class_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def _refuse_escapes(base: Path, folders: list[Path], records: list[Record]) -> None:
    inside = base.resolve()
    paths = [*folders, *(r.file for r in records)]
    escaping = [p for p in paths if not p.resolve().is_relative_to(inside)]
    if escaping:
        listing = ", ".join(f"{p.relative_to(base)} -> {p.resolve()}" for p in escaping[:20])
        raise ValueError(
            f"imagefolder root '{base}': {len(escaping)} path(s) resolve outside the root "
            f"(symlinks out): {listing}; copy the images into the root or point "
            "data_ingestion.sources.imagefolder.root at a folder that contains them"
        )


_ROOT_KEY = "data_ingestion.sources.imagefolder.root"
_LAYOUT = "root/<class>/<image> or root/<split>/<class>/<image> (split: train, val, test)"


def _readable_root(root: str) -> Path:
    """`root` as a folder this process can list; else one paragraph with the fix."""
    base = Path(root)
    where = f"imagefolder root '{root}' ({base.absolute()})"
    key = f"{_ROOT_KEY} (parameters_data_ingestion.yml)"
    if not base.is_dir():
        what = "a file, not a folder" if base.exists() else "missing"
        raise FileNotFoundError(
            f"{where} is {what}: set {key} to your image folder, laid out as {_LAYOUT} (e.g. "
            f"`kedro run --params {_ROOT_KEY}=/path/to/images`), or create it"
        )
    if not os.access(base, os.R_OK | os.X_OK):
        raise PermissionError(
            f"{where} cannot be listed by this user (permissions "
            f"{oct(base.stat().st_mode & 0o777)}): `chmod u+rx` it (and its class folders), "
            f"or set {key} to a readable copy"
        )
    return base


def class_names(root: str, classes: list[str] | None = None) -> list[str]:
    """The classes `load` would give (`classes`, else the class folder names), from the folder
    names alone (no image is read): what the preflight checks before any work."""
    found = {d.name for _, group in _groups(_readable_root(root)) for d in _class_dirs(group)}
    return list(classes or sorted(found))


def _groups(base: Path) -> list[tuple[str | None, Path]]:
    """(split, folder of class folders): every top folder if all are splits, else the root."""
    top = _class_dirs(base)
    if top and all(d.name in SPLITS for d in top):
        return [(d.name, d) for d in top]
    return [(None, base)]


def check_classes(root: str, classes: list[str] | None = None, minimum: int = 2) -> None:
    """Refuse a root with fewer than `minimum` classes (data_validation.min_classes), naming
    the folder, the key and the fix; the common mistake is a root one level too deep."""
    found = class_names(root, classes)
    if len(found) < minimum:
        listed = f" ({', '.join(found)})" if found else ""
        raise ValueError(
            f"parameters_data_ingestion.yml: {_ROOT_KEY} '{root}' holds {len(found)} class "
            f"folder(s){listed}, but a classifier needs at least {minimum} "
            f"(data_validation.min_classes): lay it out as {_LAYOUT} with one folder per "
            f"class; if '{root}' is itself one class's folder, set {_ROOT_KEY} to the folder "
            "above it"
        )


def load(root: str, classes: list[str] | None = None) -> SourceData:
    """Every image file under `root`; class = its folder (an empty one still counts), split =
    the folder above if every top-level folder is train/val/test. A path resolving outside
    the root is refused: a dataset never reads other files of the machine. `classes` fixes
    the class list and order (default: sorted folder names).
    """
    base = _readable_root(root)
    groups = _groups(base)
    split_layout = groups[0][0] is not None
    records: list[Record] = []
    found: set[str] = set()
    for split, directory in groups:
        for class_dir in _class_dirs(directory):
            found.add(class_dir.name)
            for image in _images(class_dir):
                rel = image.relative_to(base).as_posix()
                records.append(Record(path=rel, label=class_dir.name, split=split, file=image))
    _refuse_escapes(base, [d for _, g in groups for d in _class_dirs(g)], records)
    if not found:
        raise ValueError(
            f"no class folders under '{root}': expected root/<class>/<image> or "
            "root/<split>/<class>/<image> with split in train/val/test"
        )
    return SourceData(
        records=records,
        classes=list(classes) if classes is not None else sorted(found),
        origin=str(base),
        info={"layout": "split/class/image" if split_layout else "class/image"},
    )
