"""Cost of a method as one of its size options grows (VPT: prompt length p)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from torch import nn

from visprompt import methods
from visprompt.profiling.flops import forward_flops
from visprompt.profiling.profile import (
    ProfileSettings,
    interleaved_timings,
    random_images,
)
from visprompt.profiling.steps import make_train_step
from visprompt.profiling.timing import percentile_ms, resolve_device

#: VPT-deep MACs relative to the bare ViT-B/16 at 224 (Jia et al. 2022), by prompt count.
VPT_LITERATURE_MACS = {20: 1.105, 100: 1.535}


def prompt_length_curve(
    backbone: nn.Module,
    prompts: Sequence[int],
    settings: ProfileSettings,
    num_classes: int = 10,
    method: str = "vpt",
    options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """GFLOPs per image and training-step time of `method` for each prompt count.

    p = 0 is the same frozen backbone and new head without prompts (a linear probe): the
    reference of both ratios. Step times are medians of interleaved rounds.
    """
    if 0 not in prompts:
        raise ValueError(f"the prompt counts must include 0 (the reference); got {list(prompts)}")
    device = resolve_device(settings.device)
    models = {
        p: methods.build(
            method if p else "linear_probe",
            copy.deepcopy(backbone),
            num_classes,
            **((options or {}) | {"num_prompts": p} if p else {}),
        ).to(device)
        for p in prompts
    }
    batch = random_images(settings.train_batch_size, settings, device)
    single = batch[:1]
    steps = {p: make_train_step(m, batch) for p, m in models.items()}
    seconds = interleaved_timings(steps, settings, settings.repeats, f"{method} prompt curve")
    rows = []
    for p, model in models.items():
        model.eval()
        rows.append(
            {
                "num_prompts": p,
                "gflops": forward_flops(model, single) / 1e9,
                "train_step_ms": percentile_ms(seconds[p], 50),
                "trainable_params": methods.count_parameters(model)["trainable"],
            }
        )
    ref = next(r for r in rows if r["num_prompts"] == 0)
    for row in rows:
        row["gflops_ratio"] = row["gflops"] / ref["gflops"]
        row["train_step_ratio"] = row["train_step_ms"] / ref["train_step_ms"]
        row["literature_macs_ratio"] = VPT_LITERATURE_MACS.get(row["num_prompts"], float("nan"))
    return rows
