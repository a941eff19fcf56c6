"""Is data loading the bottleneck? Time spent waiting for the next batch vs the whole step."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from visprompt.profiling.steps import make_train_step
from visprompt.profiling.timing import synchronize


@dataclass(frozen=True)
class DataWait:
    """Seconds waiting for batches and seconds of compute, over `batches` steps."""

    wait_s: float
    compute_s: float
    batches: int

    @property
    def fraction(self) -> float:
        """Share of the step time spent waiting for data (the target is <= 0.05)."""
        total = self.wait_s + self.compute_s
        return self.wait_s / total if total else 0.0


def measure_data_wait(
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    step: Callable[[torch.Tensor, torch.Tensor], object],
    device: torch.device,
    max_batches: int,
    skip: int = 1,
) -> DataWait:
    """Iterate `loader` as training does, splitting the time into waiting (`next(loader)`)
    and computing (`step`, preprocessing included); the first `skip` batches (start-up) are
    left out."""
    if max_batches < 1:
        raise ValueError(f"max_batches must be >= 1, got {max_batches}")
    wait = compute = 0.0
    counted = 0
    iterator = iter(loader)
    for index in range(skip + max_batches):
        start = time.perf_counter()
        try:
            images, labels = next(iterator)
        except StopIteration:
            break
        fetched = time.perf_counter()
        step(images.to(device), labels.to(device))
        synchronize(device)
        if index >= skip:
            wait += fetched - start
            compute += time.perf_counter() - fetched
            counted += 1
    if counted == 0:
        raise ValueError(f"the loader gave no batch after the {skip} skipped: use more data")
    return DataWait(wait, compute, counted)


def training_data_wait(
    model: nn.Module,
    dataset: Dataset,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    num_workers: int,
    device: torch.device,
    batches: int,
) -> DataWait:
    """Data wait of `model`'s training step fed by a shuffled DataLoader over `dataset`
    ((uint8 CHW, label) pairs); `preprocess` makes model input on the device, as training."""
    step = make_train_step(model, preprocess(dataset[0][0].unsqueeze(0).to(device)))
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    return measure_data_wait(loader, lambda x, y: step.run(preprocess(x), y), device, batches)
