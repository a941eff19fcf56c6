"""`imagefolder`: root/<class>/<image> or root/<split>/<class>/<image>."""

from __future__ import annotations

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


def load(root: str, classes: list[str] | None = None) -> SourceData:
    """Every image file under `root`; class = its folder (an empty one still counts), split =
    the folder above if every top-level folder is train/val/test. A path resolving outside
    the root is refused: a dataset never reads other files of the machine. `classes` fixes
    the class list and order (default: sorted folder names).
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(
            f"imagefolder root '{root}' is not a directory; set "
            "data_ingestion.sources.imagefolder.root to a folder of class folders"
        )
    top = _class_dirs(base)
    split_layout = bool(top) and all(d.name in SPLITS for d in top)
    groups = [(d.name, d) for d in top] if split_layout else [(None, base)]
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
