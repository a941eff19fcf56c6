"""Helpers for registry tests: a tiny backbone and prompt written into a project root.

Importable by subprocesses (tests/ is on the pytest pythonpath and set in PYTHONPATH).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import torch
from tiny import TINY_BACKBONES, make_backbone

from visprompt import methods
from visprompt.backbones import data_config, save_weights
from visprompt.registry.promotion import Decision, register_and_promote

CLASSES = [str(i) for i in range(5)]


def backbone_spec(root: Path, weights_name: str = "vit") -> dict:
    """Write the tiny ViT's weights into the project and return its spec."""
    name, kwargs = TINY_BACKBONES["vit"]
    path = root / "data" / "06_models" / "backbones" / f"{weights_name}.safetensors"
    sha = save_weights(make_backbone("vit"), path)
    return {
        "name": name,
        "model_kwargs": kwargs,
        "weights_path": str(path.relative_to(root)),
        "sha256": sha,
        "source": "pretrain",
    }


def make_package(
    root: Path, seed: int, weights_name: str = "vit"
) -> tuple[Path, dict, methods.AdaptedModel]:
    """A linear probe with a seeded head, saved as a method artifact, plus its package."""
    spec = backbone_spec(root, weights_name)
    model = methods.build("linear_probe", make_backbone("vit"), num_classes=len(CLASSES))
    torch.manual_seed(seed)
    torch.nn.init.normal_(model.head.weight, std=1.0)
    artifact = methods.save(model, root / f"artifact_{seed}")
    cfg = data_config(model.backbone)
    package = {
        "class_names": CLASSES,
        "preprocessing": {"image_size": 32, "mean": list(cfg["mean"]), "std": list(cfg["std"])},
        "backbone": spec,
        "project_root": str(root),
    }
    return artifact, package, model


def example_images(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def register_candidate(
    root: Path, name: str, seed: int, metric: float, margin: float = 0.01
) -> Decision:
    """Package a seeded linear probe and run it through registration and promotion."""
    artifact, package, _ = make_package(root, seed)
    with mlflow.start_run():
        return register_and_promote(
            run=f"run{seed}",
            artifact_dir=artifact,
            package=package,
            example_images=example_images(2),
            model_name=name,
            metric_name="val_top1",
            metric=metric,
            margin=margin,
            lineage={"git_commit": "abc", "data_hash": "d1"},
            lock_file=root / "mlflow" / ".registry.lock",
        )
