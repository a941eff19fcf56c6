"""Batched on-device augmentation of normalised images, driven by an explicit generator.

Runs after `Preprocess` on the device, so workers only copy bytes and the random draws are
reproducible from (seed, epoch) whatever the worker count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def flip_crop(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding of side // 8 pixels, then a random horizontal flip.

    Zero padding in normalised space is the dataset mean colour. Each image gets its own
    offsets and flip.
    """
    n, _, h, w = images.shape
    pad = max(1, min(h, w) // 8)
    padded = F.pad(images, (pad, pad, pad, pad))
    dev = images.device
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=dev)
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    rows = oy[:, None] + torch.arange(h, device=dev)  # (n, h)
    cols = ox[:, None] + torch.arange(w, device=dev)  # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()
