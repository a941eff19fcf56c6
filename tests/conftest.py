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
torch.set_num_threads(min(2, torch.get_num_threads()))


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
