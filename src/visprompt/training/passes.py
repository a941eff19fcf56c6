"""Passes over a dataset on the device: a training epoch, an evaluation, a prediction.

Sums are all-reduced over the processes: the numbers are those of the global batch.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from lightning.fabric import Fabric
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset

from visprompt.progress import advance, progress_bar
from visprompt.training.augment import flip_crop
from visprompt.training.config import Preprocess, TrainConfig
from visprompt.training.placement import Placement
from visprompt.training.prefix_cache import Activations

log = logging.getLogger(__name__)


class Batches:
    """(inputs, labels) on the device for one pass over `batch_sampler` (a batch size: in
    dataset order): raw images through Preprocess, or a prefix cache's activations."""

    def __init__(
        self,
        fabric: Fabric,
        dataset: Dataset,
        preprocess: Preprocess,
        batch_sampler: Iterable[list[int]] | int,
        num_workers: int,
        cached: Activations | None = None,
    ) -> None:
        if isinstance(batch_sampler, int):
            batch_sampler = BatchSampler(range(len(dataset)), batch_sampler, drop_last=False)
        self.fabric, self.preprocess, self.cached = fabric, preprocess, cached
        self.batch_sampler = batch_sampler
        # A plain DataLoader: Fabric's wrapper would reset the sampler's epoch to its own
        # iteration count, which breaks the data order of a resumed run.
        self.loader = DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            pin_memory=fabric.device.type == "cuda",
        )

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.cached is not None:
            for indices in self.batch_sampler:
                yield self.cached.batch(indices)
            return
        for images, labels in self.loader:
            images, labels = self.fabric.to_device((images, labels))
            yield self.preprocess(images), labels


def evaluate(module: nn.Module, batches: Batches, fabric: Fabric) -> tuple[float, float]:
    """(mean loss, top-1) over all processes' shards."""
    was_training = module.training
    module.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=fabric.device)
    with torch.no_grad(), fabric.autocast():
        for x, y in batches:
            logits = module(x).float()
            sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
            sums[1] += (logits.argmax(1) == y).sum()
            sums[2] += len(y)
    module.train(was_training)
    sums = fabric.all_reduce(sums, reduce_op="sum")
    count = max(1.0, float(sums[2]))
    return float(sums[0]) / count, float(sums[1]) / count


def train_epoch(
    wrapped: nn.Module,
    optimizer: Any,
    scheduler: Any,
    batches: Batches,
    fabric: Fabric,
    config: TrainConfig,
    epoch: int,
    generator: torch.Generator | None,
) -> dict[str, float]:
    """One epoch of optimizer steps; the history row's training numbers and timings."""
    wrapped.train()
    sums = torch.zeros(3, dtype=torch.float64, device=fabric.device)
    wait = 0.0
    start = time.perf_counter()
    bar = progress_bar(
        total=len(batches),
        desc=f"epoch {epoch + 1}/{config.epochs}",
        leave=False,
        disable=not (config.progress and fabric.is_global_zero),
        dynamic_ncols=True,
    )
    iterator = iter(batches)
    for step in range(len(batches)):
        t0 = time.perf_counter()
        x, y = next(iterator)
        wait += time.perf_counter() - t0
        if generator is not None:
            x = flip_crop(x, generator)
        logits = wrapped(x).float()
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        fabric.backward(loss)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            sums[0] += loss.detach().double() * len(y)
            sums[1] += (logits.argmax(1) == y).sum()
            sums[2] += len(y)
        bar.update(1)
        advance((epoch + (step + 1) / len(batches)) / config.epochs)  # the job's ETA
        if bar.n % 10 == 0 or step == len(batches) - 1:
            seen, elapsed = float(sums[2]), time.perf_counter() - start
            bar.set_postfix(
                loss=f"{float(sums[0]) / seen:.4f}",
                acc=f"{float(sums[1]) / seen:.3f}",
                ips=f"{seen * fabric.world_size / elapsed:.0f}",
                refresh=False,
            )
        if config.log_every and (step + 1) % config.log_every == 0 and fabric.is_global_zero:
            log.info("epoch %d step %d/%d loss %.4f", epoch, step + 1, len(batches), loss.item())
    bar.close()
    elapsed = time.perf_counter() - start
    sums = fabric.all_reduce(sums, reduce_op="sum")
    count = max(1.0, float(sums[2]))
    return {
        "train_loss": float(sums[0]) / count,
        "train_top1": float(sums[1]) / count,
        "images_per_s": float(sums[2]) / elapsed,
        "data_wait_s": wait,
        "train_step_s": elapsed / max(1, len(batches)),
    }


def predict(
    model: nn.Module,
    dataset: Dataset,
    preprocess: Preprocess,
    batch_size: int = 256,
    *,
    num_workers: int = 0,
    progress: bool = False,
    placement: Placement | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits float32 (N, C), labels int64 (N,)) on the CPU, in dataset order.

    Runs in eval mode (restored afterwards) on `placement` (the model is moved there, and
    runs in its precision), else on the device where `model`'s parameters are, in fp32.
    """
    if placement is not None:
        model.to(placement.device)
    device = next(model.parameters()).device
    autocast = placement.autocast() if placement is not None else contextlib.nullcontext()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    with torch.inference_mode(), autocast:
        for images, target in progress_bar(
            loader, desc="predict", disable=not progress, leave=False
        ):
            logits.append(model(preprocess(images.to(device))).float().cpu())
            labels.append(torch.as_tensor(target, dtype=torch.long))
    model.train(was_training)
    if not logits:
        raise ValueError("predict: the dataset is empty")
    return torch.cat(logits), torch.cat(labels)
