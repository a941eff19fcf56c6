"""Linear probe: the frozen backbone's pooled features into a new linear head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from visprompt.backbones import pooled_features
from visprompt.methods.base import AdaptedModel, register


@register("linear_probe")
class LinearProbe(AdaptedModel):
    """Trains `Linear(D, C)` only; the backbone runs frozen in eval mode."""

    def __init__(self, backbone: nn.Module, num_classes: int, **options: Any) -> None:
        super().__init__(backbone, num_classes, **options)
        self.head = self.new_head()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_features(self.backbone, images))
