"""Learning-rate schedule: linear warm-up, then cosine decay to a floor, per optimizer step.

Per step (not per epoch) so that short runs with few epochs still warm up smoothly. The
factor multiplies every parameter group's own base lr (methods with per-part learning
rates keep their ratios while they decay); every group ends at `min_lr` itself, so each
group's floor is `min_lr` over its own base lr (a group below `min_lr` stays at its lr).
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, floor: float) -> float:
    """Multiplier of the base lr at optimizer step `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    *,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float,
    min_lr: float,
) -> LambdaLR:
    """A LambdaLR stepping once per optimizer step with `lr_factor`, one floor per group."""
    total = steps_per_epoch * epochs
    warmup = round(steps_per_epoch * warmup_epochs)
    return LambdaLR(
        optimizer,
        [
            partial(
                lr_factor, total_steps=total, warmup_steps=warmup, floor=min(1.0, min_lr / g["lr"])
            )
            for g in optimizer.param_groups
        ],
    )
