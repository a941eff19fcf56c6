"""Tiny settings shared by the pipeline tests (a 2-block ViT at 32 px, 1-epoch pretraining)."""

from pathlib import Path
from typing import Any

import yaml
from kedro.framework.hooks import _create_hook_manager, hook_impl
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from tiny import TINY_VIT_SPEC

from visprompt.training.runs import RunSpec

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


TRAINING_ENTRIES = [
    "{run}.seed_{seed}.artifact_dir",
    "{run}.seed_{seed}.train_summary",
    "{run}.seed_{seed}.history",
]


class _Outputs:
    """Keeps every node's outputs as the node returned them (the model, not its folder)."""

    def __init__(self) -> None:
        self.outputs: dict[str, Any] = {}

    @hook_impl
    def after_node_run(self, outputs: dict[str, Any]) -> None:
        self.outputs |= outputs


def run_training(
    spec: RunSpec,
    seed: int,
    root: Path,
    inputs: dict[str, Any],
    hparams: str = "config",
) -> tuple[Any, dict[str, Any], list[dict[str, float]]]:
    """Seed `seed` of `spec` through its training pipeline, the project's catalog entries and
    the project's MLflow hook, as `kedro run` runs it: (model, saved summary, history).

    `inputs`: shards, validation_summary, backbone_specs, params:training.defaults, and
    optionally prompt_inits, tuned_hparams; the checkpoints go under `root`.
    """
    from visprompt.hooks import DataTrackingHook
    from visprompt.pipelines.runs import seed_namespace
    from visprompt.pipelines.training.pipeline import run_pipeline

    catalog = project_catalog(TRAINING_ENTRIES, root)
    free = {
        "params:training_engine": ENGINE,
        "params:training.checkpoint_root": str(root / "checkpoints"),
        "params:training.hparams": hparams,
    }
    for name, value in (free | inputs).items():
        catalog[name] = MemoryDataset(value)
    hooks, tracking, kept = _create_hook_manager(), DataTrackingHook(), _Outputs()
    hooks.register(tracking)
    hooks.register(kept)
    tracking.after_catalog_created(catalog)
    ns = seed_namespace(spec.name, seed)
    pipeline = run_pipeline(spec, hparams).only_nodes_with_namespaces([ns])
    SequentialRunner().run(pipeline, catalog, hooks)
    model = kept.outputs[f"{ns}.artifact_dir"]
    return model, catalog.load(f"{ns}.train_summary"), catalog.load(f"{ns}.history")
