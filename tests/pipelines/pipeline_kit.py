"""Tiny settings shared by the pipeline tests (a 2-block ViT at 32 px, 1-epoch pretraining)."""

from pathlib import Path

import yaml
from kedro.io import DataCatalog
from tiny import TINY_VIT_SPEC

ROOT = Path(__file__).resolve().parents[2]

TINY_VIT = TINY_VIT_SPEC
TINY_PRETRAIN = {
    "num_classes": 4,
    "num_images": 48,
    "seed": 0,
    "val_fraction": 0.25,
    "train": {"epochs": 1, "batch_size": 16, "lr": 0.001, "progress": False},
}
ENGINE = {"accelerator": "cpu", "devices": 1, "precision": "32-true"}


def project_catalog(names: list[str], root: Path) -> DataCatalog:
    """The project's own catalog entries `names` (conf/base/catalog_*.yml, kedro-mlflow
    wrappers included; a name such as `exp.comparison` through its factory pattern), with
    every file path moved under `root`."""
    config: dict = {}
    for file in sorted((ROOT / "conf/base").glob("catalog*.yml")):
        config |= yaml.safe_load(file.read_text()) or {}

    def moved(entry: dict) -> dict:
        entry = dict(entry)
        for field in ("filepath", "path"):
            if field in entry:
                entry[field] = str(root / entry[field])
        if isinstance(entry.get("dataset"), dict):
            entry["dataset"] = moved(entry["dataset"])
        return entry

    chosen = {name: entry for name, entry in config.items() if name in names or "{" in name}
    return DataCatalog.from_config({name: moved(entry) for name, entry in chosen.items()})
