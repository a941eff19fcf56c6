"""Full fine-tuning: every backbone weight trains, with a new head (the accuracy reference)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from visprompt.backbones import pooled_features
from visprompt.methods.base import AdaptedModel, register
from visprompt.methods.full_finetune.config import FullFinetuneConfig


def adaptable_parameters(backbone: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """Backbone parameters outside its source classifier.

    The source classifier is never on the path of a method with a new head, so training
    it would only add parameters that receive no gradient.
    """
    get_classifier = getattr(backbone, "get_classifier", None)
    source = {id(p) for p in get_classifier().parameters()} if get_classifier else set()
    return ((n, p) for n, p in backbone.named_parameters() if id(p) not in source)


@register(FullFinetuneConfig)
class FullFinetune(AdaptedModel):
    """Everything trains: backbone (in train mode: BatchNorm statistics update, dropout on)
    and a new `Linear(D, C)` head. The backbone's source classifier stays frozen (unused).

    The artifact holds the whole backbone (parameters and buffers): it is as large as the
    backbone, by design.
    """

    trains_backbone = True

    def __init__(self, backbone: nn.Module, num_classes: int, config: FullFinetuneConfig) -> None:
        super().__init__(backbone, num_classes, config)
        for _, p in adaptable_parameters(self.backbone):
            p.requires_grad_(True)
        self.head = self.new_head()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_features(self.backbone, images))
