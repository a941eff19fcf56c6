"""Custom Kedro datasets, written atomically: a failing save never leaves half a folder and
never loses the previous one. data_ingestion builds into `shards_staging`; saving
`validation_summary` swaps the staged shards in (`visprompt.data.staging`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset
from kedro.io.core import DatasetError

from visprompt.atomic import atomic_directory, atomic_path
from visprompt.data import staging
from visprompt.data.manifest import TEXT_COLUMNS
from visprompt.data.shards import MANIFEST


class _PathDataset(AbstractDataset[Any, Any]):
    """A dataset at one path (`filepath`), described by it."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class ShardsDataset(_PathDataset):
    """The current, validated shard directory, loaded as its path; read-only (a new version
    arrives through `ValidationSummaryDataset.save`)."""

    def load(self) -> str:
        staging.recover(self._filepath)
        if not self._filepath.is_dir():
            raise FileNotFoundError(
                f"shard directory '{self._filepath}' does not exist yet; run `kedro run "
                "--pipelines data_ingestion,data_validation`"
            )
        return str(self._filepath)

    def save(self, data: None) -> None:
        raise DatasetError(
            f"'{self._filepath}' is replaced only by a validated version (save "
            "validation_summary); data_ingestion writes to shards_staging"
        )

    def _exists(self) -> bool:
        return self._filepath.is_dir()


class StagingDataset(_PathDataset):
    """Loads as the staging folder's path of the shard directory at `filepath`, where
    data_ingestion builds the next version (`visprompt.data.staging.staging_dir`)."""

    def load(self) -> str:
        return str(staging.staging_dir(self._filepath))

    def save(self, data: None) -> None:
        raise DatasetError("shards_staging is written by the ingestion node itself")

    def _exists(self) -> bool:
        return True


class ValidationTargetDataset(_PathDataset):
    """Loads as the path of the version data_validation checks for the shard directory at
    `filepath`: the staged one, else the current one (`staging.version_to_validate`)."""

    def load(self) -> str:
        return str(staging.version_to_validate(self._filepath))

    def save(self, data: None) -> None:
        raise DatasetError("shards_to_validate is read-only: data_ingestion stages a version")

    def _exists(self) -> bool:
        return True


class StagedManifestDataset(_PathDataset):
    """The manifest data_ingestion writes into the staged version of the shard directory at
    `filepath`; loads the manifest of the version data_validation checks (the staged one,
    else the current one), so validation also runs alone after a committed ingestion."""

    def load(self) -> pd.DataFrame:
        path = staging.version_to_validate(self._filepath) / MANIFEST
        return ManifestDataset(str(path)).load()

    def save(self, data: pd.DataFrame) -> None:
        ManifestDataset(str(staging.staging_dir(self._filepath) / MANIFEST)).save(data)

    def _exists(self) -> bool:
        return (staging.staging_dir(self._filepath) / MANIFEST).is_file()


class ValidationSummaryDataset(_PathDataset):
    """The current shard directory's summary.json; saving writes it into the staged version,
    which then replaces the current one atomically (`visprompt.data.staging.commit`)."""

    def load(self) -> dict:
        return staging.read_summary(self._filepath)

    def save(self, data: dict) -> None:
        staging.commit(self._filepath, data)

    def _exists(self) -> bool:
        return (self._filepath / "summary.json").is_file()


class FileTreeDataset(_PathDataset):
    """A folder of files (e.g. a GX data docs site): saves {relative path: bytes}, loads as
    the folder's path."""

    def load(self) -> str:
        if not self._filepath.is_dir():
            raise FileNotFoundError(f"directory '{self._filepath}' does not exist yet")
        return str(self._filepath)

    def save(self, data: Mapping[str, bytes]) -> None:
        with atomic_directory(self._filepath) as directory:
            root = directory.resolve()
            for relative, content in data.items():
                target = (directory / relative).resolve()
                if not target.is_relative_to(root):
                    raise ValueError(
                        f"file '{relative}' would be written outside the dataset's folder"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)

    def _exists(self) -> bool:
        return self._filepath.is_dir()


class ManifestDataset(_PathDataset):
    """The manifest CSV; text columns are read as text (labels "0".."9" or "01" stay strings,
    empty cells stay missing) and the file is replaced atomically."""

    def load(self) -> pd.DataFrame:
        return pd.read_csv(self._filepath, dtype=dict.fromkeys(TEXT_COLUMNS, str))

    def save(self, data: pd.DataFrame) -> None:
        with atomic_path(self._filepath) as tmp:
            data.to_csv(tmp, index=False)

    def _exists(self) -> bool:
        return self._filepath.is_file()
