"""Shared fixtures: tiny, randomly initialised timm backbones of every supported family.

Tests build real timm models, only small: 32 px inputs, a few blocks, narrow widths.
"""

from __future__ import annotations

import os

import pytest
import timm
import torch

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

IMAGE_SIZE = 32

TINY_BACKBONES = {
    # ViT with a CLS token (patch 4 at 32 px: 64 patches), D=64, 4 blocks.
    "vit": ("vit_tiny_patch16_224", dict(img_size=32, patch_size=4, embed_dim=64, depth=4,
                                         num_heads=2, num_classes=10)),
    # ViT with register tokens (CLS + 4 registers as prefix).
    "vit_reg": ("vit_tiny_patch16_224", dict(img_size=32, patch_size=4, embed_dim=64, depth=4,
                                             num_heads=2, num_classes=10, reg_tokens=4)),
    # ViT with average pooling and no CLS token.
    "vit_avg": ("vit_tiny_patch16_224", dict(img_size=32, patch_size=4, embed_dim=64, depth=4,
                                             num_heads=2, num_classes=10, global_pool="avg",
                                             class_token=False)),
    # ResNet-18 layout with narrow stages (BatchNorm everywhere).
    "resnet": ("resnet18", dict(num_classes=10, channels=(16, 32, 64, 128))),
    # ConvNeXt (LayerNorm) with two narrow stages.
    "convnext": ("convnext_atto", dict(num_classes=10, depths=(1, 1, 1, 1),
                                       dims=(16, 32, 48, 64))),
}


def make_backbone(kind: str, seed: int = 0) -> torch.nn.Module:
    """A fresh tiny backbone, identical for the same (kind, seed)."""
    name, kwargs = TINY_BACKBONES[kind]
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, **kwargs).eval()


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
