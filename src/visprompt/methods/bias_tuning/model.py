"""Bias tuning (BitFit): only the bias terms of the backbone, plus a new head."""

from __future__ import annotations

import torch
from torch import nn

from visprompt.backbones import pooled_features
from visprompt.methods.base import AdaptedModel, register
from visprompt.methods.bias_tuning.config import BiasTuningConfig
from visprompt.methods.full_finetune.model import adaptable_parameters


def is_bias(name: str) -> bool:
    """`...bias` (linears, convs, norm betas) and `..._bias` (e.g. BEiT's q_bias/v_bias)."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf == "bias" or leaf.endswith("_bias")


@register(BiasTuningConfig)
class BiasTuning(AdaptedModel):
    """Trains every bias of the backbone (as BitFit: norm betas included) + a new head.

    The source classifier's bias is left out (it is not on the path to the new head).
    The backbone stays in eval mode.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, config: BiasTuningConfig) -> None:
        super().__init__(backbone, num_classes, config)
        self.train_backbone_parameters(
            [name for name, _ in adaptable_parameters(self.backbone) if is_bias(name)]
        )
        self.head = self.new_head()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_features(self.backbone, images))
