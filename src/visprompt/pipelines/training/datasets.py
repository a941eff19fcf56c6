"""Kedro dataset of a saved method artifact: saves an `AdaptedModel`, loads as its folder path."""

from __future__ import annotations

from kedro.io import DatasetError

from visprompt import methods
from visprompt.methods.base import CONFIG_FILE, AdaptedModel
from visprompt.pipelines.datasets import _PathDataset


class MethodArtifactDataset(_PathDataset):
    """`methods.save` on save (atomic per folder); on load, the folder path as a string, which
    keeps the backbone out of the catalog (consumers rebuild it from `backbone_specs`)."""

    def save(self, data: AdaptedModel) -> None:
        if not isinstance(data, methods.AdaptedModel):
            raise DatasetError(
                f"{self._filepath}: expected an AdaptedModel, got {type(data).__name__}"
            )
        methods.save(data, self._filepath)

    def load(self) -> str:
        if not self._exists():
            raise DatasetError(
                f"no method artifact at {self._filepath}: train it first (`kedro run "
                f"--namespaces {self._filepath.parent.name}.{self._filepath.name}`, the run's "
                "seed) or `dvc pull`"
            )
        return self._filepath.as_posix()

    def _exists(self) -> bool:
        return (self._filepath / CONFIG_FILE).is_file()
