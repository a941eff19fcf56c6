"""Zero-overhead inference forms of trained methods.

Some methods can be folded into the backbone's own weights once training is over: LoRA's
low-rank updates are merged into the weights they adapt (peft's merge), and an AP channel
shift on a normalisation layer's output is that layer's β plus δ. What remains is the
backbone and the new head, as fast as a linear probe. `deployable(model)` returns that
form, or the model itself when its method cannot fold.
"""

from __future__ import annotations

import torch
from torch import nn

from visprompt.backbones import freeze, pooled_features


class Classifier(nn.Module):
    """A (folded) backbone's pooled features into a head: the served form of a method."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        freeze(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_features(self.backbone, images))


def deployable(model: nn.Module) -> nn.Module:
    """`model.merged_for_inference()` when the model offers it, else `model` (eval mode).

    The result computes the same function (within float rounding) and owns its tensors:
    `model` is left as it was.
    """
    merge = getattr(model, "merged_for_inference", None)
    return (merge() if merge is not None else model).eval()
