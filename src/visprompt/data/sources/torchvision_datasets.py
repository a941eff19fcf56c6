"""`torchvision`: a torchvision dataset class by name, read from a local root.

Download is off unless asked; a dataset missing from `root` fails with the fix. Classes with
a `train` flag give train/test, classes with a `split` argument get `splits` (ours -> theirs,
default train/test), others are one unsplit pool.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from torchvision import datasets

from visprompt.data.sources.base import Record, SourceData

# Attributes where torchvision datasets keep their integer labels (read without decoding).
_LABEL_ATTRIBUTES = ("targets", "labels", "_labels")


def _dataset_class(name: str) -> type:
    cls = getattr(datasets, name, None)
    if not (inspect.isclass(cls) and hasattr(cls, "__getitem__")):
        raise ValueError(
            f"'{name}' is not a torchvision.datasets class; use one such as CIFAR10, SVHN, "
            "Flowers102, DTD, EuroSAT, GTSRB, OxfordIIITPet, Food101 or ImageFolder"
        )
    return cls


def _split_arguments(cls: type, splits: dict[str, str] | None) -> dict[str | None, dict]:
    """Constructor keyword arguments per split of ours (None: the source has no splits)."""
    params = inspect.signature(cls.__init__).parameters
    if "train" in params:
        return {"train": {"train": True}, "test": {"train": False}}
    if "split" in params:
        mapping = splits or {"train": "train", "test": "test"}
        return {ours: {"split": theirs} for ours, theirs in mapping.items()}
    return {None: {}}


def _missing_message(cls: type, name: str, root: str, error: Exception, download: bool) -> str:
    """Which files torchvision looked for and where; no download advice (it needs a network)."""
    files = [str(r[0]) for r in getattr(cls, "resources", []) if isinstance(r, tuple)]
    folder = Path(root) / name / "raw" if files else Path(root)
    expected = f" (expected {files} in {folder})" if files else ""
    idx_hint = (
        "; for idx files in any folder (.gz or not) use the `idx` source instead"
        if any("idx" in f for f in files)
        else ""
    )
    tried = "download failed" if download else "download is off"
    return (
        f"torchvision {name} not found under '{root}'{expected}: {error} ({tried}). Put the "
        f"dataset's files there{idx_hint}."
    )


def _labels(dataset) -> list[int]:
    for attribute in _LABEL_ATTRIBUTES:
        values = getattr(dataset, attribute, None)
        if values is not None and len(values) == len(dataset):
            return [int(v) for v in values]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def _loader(dataset, index: int) -> Callable[[], Image.Image]:
    return lambda: dataset[index][0]


def load(
    name: str,
    root: str,
    download: bool = False,
    splits: dict[str, str] | None = None,
) -> SourceData:
    cls = _dataset_class(name)
    accepts_download = "download" in inspect.signature(cls.__init__).parameters
    records: list[Record] = []
    classes: list[str] | None = None
    for split, kwargs in _split_arguments(cls, splits).items():
        if accepts_download:
            kwargs = {**kwargs, "download": download}
        try:
            dataset = cls(root=str(Path(root)), **kwargs)
        except RuntimeError as error:
            raise FileNotFoundError(_missing_message(cls, name, root, error, download)) from error
        names = [str(c) for c in getattr(dataset, "classes", [])]
        labels = _labels(dataset)
        if not names:
            names = [str(i) for i in range(max(labels) + 1)]
        if classes is not None and names != classes:
            raise ValueError(f"torchvision {name}: splits disagree on the class list")
        classes = names
        prefix = f"{name}/{split or 'all'}"
        records += [
            Record(
                path=f"{prefix}/{i:06d}",
                label=names[label],
                split=split,
                pixels=_loader(dataset, i),
            )
            for i, label in enumerate(labels)
        ]
    return SourceData(records=records, classes=classes or [], origin=f"torchvision.{name}:{root}")
