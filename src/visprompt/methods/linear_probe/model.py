"""Linear probe: the frozen backbone's pooled features into a new linear head."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from visprompt.backbones import pooled_features
from visprompt.methods.base import AdaptedModel, SharedForm, register
from visprompt.methods.linear_probe.config import LinearProbeConfig


class PooledFeatures(nn.Module):
    """The frozen backbone's pooled features, as a module that does not own the backbone.

    The backbone is held unregistered, so `.train()`/`.to()`/`.parameters()` on this
    module leave it alone (its owner, the adapted model, keeps it frozen and in eval).
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self._backbone = (backbone,)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return pooled_features(self._backbone[0], images)


@register(LinearProbeConfig)
class LinearProbe(AdaptedModel):
    """Trains `Linear(D, C)` only; the backbone runs frozen in eval mode."""

    def __init__(self, backbone: nn.Module, num_classes: int, config: LinearProbeConfig) -> None:
        super().__init__(backbone, num_classes, config)
        self.head = self.new_head()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_features(self.backbone, images))

    def shared_form(
        self, rgb: bool = False, normalisation: Mapping[str, Any] | None = None
    ) -> SharedForm:
        """Only the head is the version's own."""
        return SharedForm(head=self.head)

    def split_for_cache(self) -> tuple[nn.Module, nn.Module]:
        """Prefix: frozen pooled features (cacheable once per image); suffix: the head."""
        return PooledFeatures(self.backbone), self.head
