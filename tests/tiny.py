"""Tiny, randomly initialised timm backbones of every supported family, for tests.

Real timm models, only small: 32 px inputs, a few blocks, narrow widths. Import from here
(`from tiny import make_backbone`), not from a conftest: several conftest modules exist.
"""

from __future__ import annotations

import timm
import torch

IMAGE_SIZE = 32

#: A 2-block, 32-wide ViT at 32 px as a project backbone spec (an entry of backbone.models in
#: parameters_backbone.yml), for the pipeline and end-to-end tests.
TINY_VIT_SPEC = {
    "name": "vit_tiny_patch16_224",
    "model_kwargs": {
        "img_size": 32,
        "patch_size": 8,
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "num_classes": 4,
    },
    "image_size": 32,
}

TINY_BACKBONES = {
    # ViT with a CLS token (patch 4 at 32 px: 64 patches), D=64, 4 blocks.
    "vit": (
        "vit_tiny_patch16_224",
        dict(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=2, num_classes=10),
    ),
    # ViT with register tokens (CLS + 4 registers as prefix).
    "vit_reg": (
        "vit_tiny_patch16_224",
        dict(
            img_size=32,
            patch_size=4,
            embed_dim=64,
            depth=4,
            num_heads=2,
            num_classes=10,
            reg_tokens=4,
        ),
    ),
    # ViT with average pooling and no CLS token.
    "vit_avg": (
        "vit_tiny_patch16_224",
        dict(
            img_size=32,
            patch_size=4,
            embed_dim=64,
            depth=4,
            num_heads=2,
            num_classes=10,
            global_pool="avg",
            class_token=False,
        ),
    ),
    # ResNet-18 layout with narrow stages (BatchNorm everywhere).
    "resnet": ("resnet18", dict(num_classes=10, channels=(16, 32, 64, 128))),
    # ConvNeXt (LayerNorm) with two narrow stages.
    "convnext": ("convnext_atto", dict(num_classes=10, depths=(1, 1, 1, 1), dims=(16, 32, 48, 64))),
    # MobileNetV3 (EfficientNet-family `blocks.N.M` stages, BatchNorm, SE), half width.
    "mobilenet": ("mobilenetv3_small_050", dict(num_classes=10)),
}


def make_backbone(kind: str, seed: int = 0) -> torch.nn.Module:
    """A fresh tiny backbone, identical for the same (kind, seed)."""
    name, kwargs = TINY_BACKBONES[kind]
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, **kwargs).eval()
