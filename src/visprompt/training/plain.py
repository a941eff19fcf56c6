"""A plain classifier seen through the hooks `fit` calls on a method (`AdaptedModel`).

Backbone pretraining trains a whole timm module: all of it is the trained state, nothing is
cached, and there is no schedule or extra state of a method's own.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class WholeModule(nn.Module):
    """`module` with every parameter that requires grad trained; `fit` trains it in place."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.module(images)

    @property
    def head(self) -> nn.Module:
        """No separate head: every parameter trains in the method's group (`param_groups`)."""
        return nn.Identity()

    def prompt_state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_prompt_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        params = [p for p in self.module.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr, "weight_decay": weight_decay}]

    def config(self) -> None:
        """No method configuration: the checkpoint signature holds the class and shapes."""

    def on_epoch_start(self, epoch: int, loader: Any | None = None) -> None:
        """Nothing is scheduled per epoch."""

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """There is no extra state."""

    def split_for_cache(self) -> None:
        """Everything trains: no frozen prefix to cache."""
