"""Kedro dataset of a saved method artifact: saves an `AdaptedModel`, loads as its folder path."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from visprompt import methods
from visprompt.methods.base import CONFIG_FILE, AdaptedModel


class MethodArtifactDataset(AbstractDataset[AdaptedModel, str]):
    """`methods.save` on save (atomic per folder); on load, the folder path as a string.

    Loading a path rather than a model keeps the backbone out of the catalog: consumers
    rebuild it from `backbone_specs` and call `methods.load(path, backbone)`.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(filepath)
        self.metadata = metadata

    def save(self, data: AdaptedModel) -> None:
        methods.save(data, self._path)

    def load(self) -> str:
        if not (self._path / CONFIG_FILE).is_file():
            raise DatasetError(
                f"no method artifact at {self._path}: train it first "
                f"(`kedro run --namespaces {self._path.parent.name}.{self._path.name}`, the "
                "run's seed) or `dvc pull`"
            )
        return self._path.as_posix()

    def _exists(self) -> bool:
        return (self._path / CONFIG_FILE).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(PurePosixPath(self._path))}
