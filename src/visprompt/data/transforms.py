"""Batched preprocessing on the device: uint8 NCHW -> resized, normalised float."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def to_model_input(
    images: torch.Tensor,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """Scale uint8 images to [0, 1], resize (bilinear) to `image_size`, normalise."""
    x = images.float().div_(255.0)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
