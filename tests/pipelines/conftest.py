"""Fixtures for the backbone/training/evaluation pipeline tests: a real MLflow sqlite store,
a tiny shard directory, and tiny backbone specs written by the backbone pipeline's code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import mlflow
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the tests import pipeline_kit

from pipeline_kit import ENGINE, TINY_PRETRAIN, TINY_VIT, run_training  # noqa: E402

from visprompt.data.shards import (
    CONTENT,
    content_sha256,
    label_counts,
    write_classes,
    write_info,
    write_split,
)
from visprompt.data.sources import synthetic


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real sqlite tracking store for the session (what kedro-mlflow uses by default)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(
        experiment_name="tests",
    )
    return uri


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 synthetic classes, 32 px: 48 train, 16 val, 16 test images."""
    directory = tmp_path_factory.mktemp("shards")
    images, labels, names = synthetic.generate(4, 80, 32, seed=1)
    for split, (lo, hi) in {"train": (0, 48), "val": (48, 64), "test": (64, 80)}.items():
        write_split(directory, split, images[lo:hi], labels[lo:hi])
    write_classes(directory, names)
    write_info(directory, "x", 32)
    return directory


@pytest.fixture(scope="session")
def shard_summary(shard_dir: Path) -> dict[str, Any]:
    """The validation summary matching `shard_dir` (what training checks)."""
    return {
        "success": True,
        "data_hash": "x",
        "counts": label_counts(shard_dir),
        CONTENT: content_sha256(shard_dir),
    }


@pytest.fixture(scope="session")
def vit_spec(tmp_path_factory: pytest.TempPathFactory, mlflow_store: str) -> dict[str, Any]:
    """A tiny ViT spec with pretrained weights (1 epoch on 36 synthetic images)."""
    from visprompt.weights import materialise

    root = tmp_path_factory.mktemp("backbones")
    entry = TINY_VIT | {"weights": ["pretrain"]}
    return materialise("vit", entry, TINY_PRETRAIN, ENGINE, root / "out", root / "ckpt")


@pytest.fixture(scope="session")
def trained(
    shard_dir: Path,
    shard_summary: dict[str, Any],
    vit_spec: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    mlflow_store: str,
):
    """linear_probe trained for 2 epochs through the training pipeline and the project's
    MLflow hook: (model, summary, history)."""
    from visprompt.training.runs import RunSpec

    inputs = {
        "shards": str(shard_dir),
        "validation_summary": shard_summary,
        "backbone_specs": {"vit": vit_spec},
        "params:training.defaults": {"epochs": 2, "batch_size": 16, "lr": 0.01, "progress": False},
    }
    spec = RunSpec(name="lp", method="linear_probe", backbone="vit")
    return run_training(spec, 0, tmp_path_factory.mktemp("trained"), inputs)
