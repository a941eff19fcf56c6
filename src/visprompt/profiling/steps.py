"""The work being measured: one training step and one inference call of a model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TrainStep:
    """forward + cross-entropy + backward + SGD step on a fixed batch; a model with nothing
    to train (the bare backbone) runs a no-grad forward, the floor every method pays."""

    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    optimizer: torch.optim.Optimizer | None

    def __call__(self) -> None:
        self.run(self.images, self.labels)

    def run(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """One step on any batch (the data-loading measurement feeds real batches here)."""
        if self.optimizer is None:
            self.model.eval()
            with torch.no_grad():
                self.model(images)
            return
        self.model.train()
        loss = F.cross_entropy(self.model(images), labels)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def resident(self) -> list[torch.Tensor]:
        """Tensors alive across steps: weights, buffers, optimizer state, the batch."""
        state = [] if self.optimizer is None else list(_optimizer_tensors(self.optimizer))
        return [*self.model.parameters(), *self.model.buffers(), *state, self.images, self.labels]


def make_train_step(model: nn.Module, images: torch.Tensor, lr: float = 1e-3) -> TrainStep:
    """A training step of `model` on `images` with random labels below its logit count
    (deterministic); no optimizer when nothing is trainable (a bare frozen backbone)."""
    with torch.no_grad():
        classes = int(model(images[:1]).shape[-1])
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, classes, (len(images),), generator=generator)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9) if params else None
    return TrainStep(model, images, labels.to(images.device), optimizer)


def make_infer_step(model: nn.Module, images: torch.Tensor) -> Callable[[], torch.Tensor]:
    """An inference call: eval mode, no autograd bookkeeping."""

    def step() -> torch.Tensor:
        model.eval()
        with torch.inference_mode():
            return model(images)

    return step


def _optimizer_tensors(optimizer: torch.optim.Optimizer):
    for state in optimizer.state.values():
        yield from (v for v in state.values() if isinstance(v, torch.Tensor))
