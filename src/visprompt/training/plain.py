"""A plain classifier (backbone pretraining) behind the hooks `fit` calls on a method."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class WholeModule(nn.Module):
    """`module` with every parameter that requires grad trained in place: no separate head,
    no method config, nothing to cache, no per-epoch schedule, no extra state (the hooks
    below that do nothing)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.module(images)

    #: no parameters (not registered): every parameter is in `param_groups`' one group
    head: nn.Module = nn.Identity()

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        params = [p for p in self.module.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr, "weight_decay": weight_decay}]

    def prompt_state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_prompt_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)

    def config(self) -> None: ...

    def on_epoch_start(self, epoch: int, loader: Any | None = None) -> None: ...

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None: ...

    def split_for_cache(self) -> None: ...
