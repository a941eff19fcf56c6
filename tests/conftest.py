"""Shared fixtures and test-run settings (the backbones themselves live in tiny.py)."""

from __future__ import annotations

import os

import pytest
import torch
from tiny import IMAGE_SIZE, TINY_BACKBONES, make_backbone

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per pytest-xdist worker (`-n 2` in pyproject.toml), and per process it
    # starts (kedro, mlflow, torchrun), so two workers don't oversubscribe two cores
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files with slow tests (end to end, several processes) first: pytest-xdist runs each
    file on one worker (`--dist loadfile`, files in this order), so the longest file does not
    start last while the other worker idles."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: the order is kept otherwise


@pytest.fixture(params=sorted(TINY_BACKBONES))
def any_backbone(request: pytest.FixtureRequest) -> torch.nn.Module:
    return make_backbone(request.param)


@pytest.fixture
def tiny_vit() -> torch.nn.Module:
    return make_backbone("vit")


@pytest.fixture
def tiny_resnet() -> torch.nn.Module:
    return make_backbone("resnet")


@pytest.fixture
def images() -> torch.Tensor:
    """A normalised batch of 4 random 32 px images."""
    return torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
