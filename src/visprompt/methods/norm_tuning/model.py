"""Norm tuning: only the affine (gamma, beta) of every normalisation layer, plus a new head."""

from __future__ import annotations

import torch
from timm.layers import RmsNorm, RmsNorm2d, SimpleNorm, SimpleNorm2d
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from visprompt.backbones import pooled_features
from visprompt.methods.base import AdaptedModel, register
from visprompt.methods.full_finetune.model import adaptable_parameters
from visprompt.methods.norm_tuning.config import NormTuningConfig

#: BatchNorm/InstanceNorm (_NormBase), LayerNorm (timm's LayerNorm2d subclasses it),
#: GroupNorm, and timm's RMS/simple norms.
NORM_TYPES: tuple[type[nn.Module], ...] = (
    _NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    RmsNorm,
    RmsNorm2d,
    SimpleNorm,
    SimpleNorm2d,
)


def norm_parameter_ids(backbone: nn.Module) -> set[int]:
    """Ids of the affine parameters that normalisation layers own directly."""
    return {
        id(p)
        for m in backbone.modules()
        if isinstance(m, NORM_TYPES)
        for p in m.parameters(recurse=False)
    }


@register(NormTuningConfig)
class NormTuning(AdaptedModel):
    """Trains the affine parameters of every BN/LN/GN (and timm RMS) norm + a new head.

    The backbone stays in eval mode, so BatchNorm keeps normalising with its frozen running
    statistics: only gamma and beta move, running mean/var never change.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, config: NormTuningConfig) -> None:
        super().__init__(backbone, num_classes, config)
        norms = norm_parameter_ids(self.backbone)
        self.train_backbone_parameters(
            [name for name, p in adaptable_parameters(self.backbone) if id(p) in norms]
        )
        self.head = self.new_head()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_features(self.backbone, images))
