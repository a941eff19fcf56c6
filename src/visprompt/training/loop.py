"""The training loop: `fit` a classifier on a train split, select on a validation split.

Lightning Fabric owns devices, precision, data parallelism, the checkpoint files
(`fabric.save`/`load`) and the per-epoch callback (`fabric.call`). Hand-written: the
optimisation (optimizer, warm-up + cosine schedule), best epoch and early stopping on
validation top-1 (`checkpoint.Progress`: Fabric has no such callbacks), and the project's
own: the prefix cache, the refusal to resume another run's checkpoint, per-epoch reseeding.

Data order: every process draws a permutation of the training set from (seed, epoch)
(torch's DistributedSampler) and takes every k-th index, so with `batch_size` as the
GLOBAL batch the union of the k processes' step-t batches is the single-process step-t
batch: 1 and k processes optimise the same objective, step for step (when the training set
size is not a multiple of k, the sampler repeats a few items to even out the shards).
Validation is split into disjoint shards and its sums are all-reduced, so it is exact.

Randomness (global torch/numpy/python generators, augmentation) is re-seeded from
(seed, epoch, rank) at the start of every epoch: a resumed run repeats an uninterrupted
one exactly without storing generator states.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import safetensors.torch
import torch
from lightning.fabric import Fabric
from lightning.fabric.utilities.seed import seed_everything
from torch.utils.data import BatchSampler, Dataset, DistributedSampler, Subset

from visprompt.training import checkpoint, prefix_cache
from visprompt.training.batchnorm import sync_trained_batchnorm
from visprompt.training.config import Preprocess, TrainConfig
from visprompt.training.param_groups import optimizer_groups
from visprompt.training.passes import Batches, evaluate, train_epoch
from visprompt.training.schedule import warmup_cosine

if TYPE_CHECKING:
    from visprompt.methods.base import AdaptedModel

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """What `fit` returns; `history` has one dict per epoch run (0-based `epoch`)."""

    history: list[dict[str, float]]
    best_epoch: int
    best_val_top1: float
    train_time_s: float
    epochs_run: int
    #: prefix cache use: {"train": status, "val": status, "build_s": seconds}, status one of
    #: "off", "built" (on the device), "spilled" (to a file, past cache_max_bytes), "reused"
    #: (kept from an earlier `fit` on the same prefix and data, see prefix_cache); build_s is
    #: included in train_time_s.
    cache: dict[str, Any] = field(default_factory=dict)


def fit(
    model: AdaptedModel,
    train_set: Dataset,
    val_set: Dataset | None,
    preprocess: Preprocess,
    config: TrainConfig,
    on_epoch_end: EpochCallback | None = None,
) -> TrainResult:
    """Train `model`'s trainable parameters; load the best validation epoch's weights back.

    `model` is an `AdaptedModel` (a plain classifier goes in as `plain.WholeModule`).
    Datasets yield (uint8 CHW tensor, int label); `preprocess` runs batched on the device.
    History rows: epoch, lr (at the epoch's first step), train_loss, train_top1, val_loss,
    val_top1, epoch_time_s, data_wait_s (time blocked on the loader), train_step_s,
    images_per_s. With `config.checkpoint_dir`, a checkpoint is written atomically after
    every epoch and a later call for the same run resumes from it (a finished run returns
    at once); a checkpoint of a different run is an error. `on_epoch_end(epoch, row)` runs
    in the rank-0 training process (with a spawn strategy: here, after training, for every
    epoch run: it need not be picklable). With `val_set=None` the last epoch counts as best
    and early stopping is off. Strategies: "ddp" re-executes the current command for the
    other ranks, or joins the processes that `torchrun` started; "ddp_spawn" pickles the
    arguments into fresh processes and loads the best state back here (what a `kedro run`
    uses: the pipeline runs once). In multi-process runs every BatchNorm that trains is a
    SyncBatchNorm (`sync_trained_batchnorm`).
    """
    if len(train_set) == 0:
        raise ValueError("fit: the training set is empty")
    spawned = config.strategy.endswith("_spawn")
    hooks = [SimpleNamespace(on_train_epoch_end=on_epoch_end)] if on_epoch_end else []
    fabric = Fabric(
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        precision=config.precision,
        plugins=[checkpoint.AtomicCheckpointIO()],
        callbacks=[] if spawned else hooks,  # spawned workers would pickle the callback
    )
    if config.batch_size % fabric.world_size:
        raise ValueError(
            f"TrainConfig.batch_size={config.batch_size} is the global batch and must be "
            f"divisible by the number of processes ({fabric.world_size})"
        )
    # spawned workers receive pickled arguments; Fabric refuses frozen dataclasses there
    result, best_state, best_extra = fabric.launch(
        _worker, model, train_set, val_set, preprocess.to_dict() if spawned else preprocess, config
    )
    if spawned and on_epoch_end is not None:
        for row in result.history:
            on_epoch_end(int(row["epoch"]), dict(row))
    # With spawn-based strategies the worker trained a copy: load its best state here.
    if isinstance(best_state, bytes):
        best_state = safetensors.torch.load(best_state)
    model.load_prompt_state_dict(best_state)
    model.load_extra_state(best_extra)
    return result


def _worker(
    fabric: Fabric,
    model: AdaptedModel,
    train_set: Dataset,
    val_set: Dataset | None,
    preprocess: Preprocess | dict[str, Any],
    config: TrainConfig,
) -> tuple[TrainResult, dict[str, torch.Tensor] | bytes, dict[str, Any]]:
    if isinstance(preprocess, dict):
        preprocess = Preprocess.from_dict(preprocess)
    # the prefix cache (and its spill file) belongs to this call: gone when it returns
    with tempfile.TemporaryDirectory(prefix="visprompt-prefix-cache-") as spill_dir:
        result, progress = _train(fabric, model, train_set, val_set, preprocess, config, spill_dir)
    best, extra = progress.best_state, json.loads(progress.best_extra_state)
    if config.strategy.endswith("_spawn"):  # by value: shared tensors die with the worker
        return result, safetensors.torch.save(best), extra
    return result, best, extra


def _train(
    fabric: Fabric,
    model: AdaptedModel,
    train_set: Dataset,
    val_set: Dataset | None,
    preprocess: Preprocess,
    config: TrainConfig,
    spill_dir: str,
) -> tuple[TrainResult, checkpoint.Progress]:
    world, rank = fabric.world_size, fabric.global_rank
    per_rank = config.batch_size // world
    seed_everything(config.seed, verbose=False)
    frozen = prefix_cache.frozen_state_digest(model)
    sig = checkpoint.signature(model, train_set, val_set, preprocess, config, frozen)
    if world > 1:
        sync_trained_batchnorm(model, fabric.device)
    model = fabric.to_device(model)

    optimizer = _optimizer(optimizer_groups(model, config), config)
    sampler = DistributedSampler(
        train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed, drop_last=False
    )
    batch_sampler = BatchSampler(sampler, per_rank, drop_last=False)
    scheduler = warmup_cosine(
        optimizer,
        steps_per_epoch=len(batch_sampler),
        epochs=config.epochs,
        warmup_epochs=config.warmup_epochs,
        min_lr=config.min_lr,
    )
    ckpt = checkpoint.RunCheckpoint(fabric, config.checkpoint_dir, sig, model, optimizer, scheduler)
    progress = ckpt.resume()  # before setup: Fabric's optimizer wrapper copies the state
    finished = progress.next_epoch >= config.epochs or progress.should_stop(config.patience)

    shard = val_set  # this process's share: every k-th item (no padding, no repeats)
    if val_set is not None and world > 1:
        shard = Subset(val_set, range(rank, len(val_set), world))
    suffix, train_cached, val_cached, cache_info = prefix_cache.prepare(
        model, frozen, train_set, shard, preprocess, config, fabric, per_rank, spill_dir, finished
    )
    train_module = suffix if suffix is not None else model
    wrapped, fabric_optimizer = fabric.setup(train_module, optimizer)
    workers = config.num_workers
    train_batches = Batches(fabric, train_set, preprocess, batch_sampler, workers, train_cached)
    val_batches = None
    if shard is not None:
        val_batches = Batches(fabric, shard, preprocess, per_rank, workers, val_cached)
    epoch_data = Batches(fabric, train_set, preprocess, per_rank, workers)

    first_epoch = progress.next_epoch
    for epoch in range(first_epoch, config.epochs):
        if progress.should_stop(config.patience):
            break
        epoch_start = time.perf_counter()
        seed = (config.seed * 1_000_003 + epoch * 7919 + rank) % 2**32
        seed_everything(seed, verbose=False)
        sampler.set_epoch(epoch)
        model.on_epoch_start(epoch, epoch_data)
        generator = None
        if config.augment == "flip_crop":
            generator = torch.Generator(device=fabric.device).manual_seed(seed)
        row: dict[str, float] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
        row |= train_epoch(
            wrapped, fabric_optimizer, scheduler, train_batches, fabric, config, epoch, generator
        )
        row["val_loss"], row["val_top1"] = math.nan, math.nan
        if val_batches is not None:
            row["val_loss"], row["val_top1"] = evaluate(train_module, val_batches, fabric)
        row["epoch_time_s"] = time.perf_counter() - epoch_start
        if epoch == first_epoch:  # this call's cache build is training time too (once)
            progress.train_time_s += cache_info["build_s"]
        progress.record(row, model, improved=val_batches is None)
        ckpt.save(progress)
        if fabric.is_global_zero:
            fabric.call("on_train_epoch_end", epoch, dict(row))

    result = TrainResult(
        history=progress.history,
        best_epoch=progress.best_epoch,
        best_val_top1=progress.best_val_top1,
        train_time_s=progress.train_time_s,
        epochs_run=len(progress.history),
        cache=cache_info,
    )
    return result, progress


def _optimizer(groups: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(groups, lr=config.lr)
