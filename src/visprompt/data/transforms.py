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
    return normalize(x, mean, std)


def _channel_stats(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """[0, 1] NCHW images -> the backbone's normalised input space."""
    return (x - _channel_stats(mean, x)) / _channel_stats(std, x)


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised NCHW input -> [0, 1] image space (unclipped): the inverse of `normalize`."""
    return x * _channel_stats(std, x) + _channel_stats(mean, x)
