"""The training loop: `fit` a classifier on a train split, select on a validation split.

Lightning Fabric owns devices, precision and data parallelism; this module owns the
optimisation (optimizer, warm-up + cosine schedule, early stopping on validation top-1),
exact resume from per-epoch checkpoints and optional prefix caching.

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

import contextlib
import copy
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F
from lightning.fabric import Fabric
from lightning.fabric.utilities.seed import seed_everything
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Subset

from visprompt.progress import progress_bar
from visprompt.training import checkpoint, prefix_cache
from visprompt.training.augment import flip_crop
from visprompt.training.batchnorm import CpuSyncBatchNorm
from visprompt.training.config import Preprocess, TrainConfig
from visprompt.training.param_groups import optimizer_groups
from visprompt.training.placement import Placement
from visprompt.training.schedule import warmup_cosine

log = logging.getLogger(__name__)

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


# -- model helpers ---------------------------------------------------------------------------
def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What training changes: a method's own tensors, or a plain module's whole state."""
    if hasattr(model, "prompt_state_dict"):
        return model.prompt_state_dict()
    return model.state_dict()


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    if hasattr(model, "load_prompt_state_dict"):
        model.load_prompt_state_dict(state)
    else:
        model.load_state_dict(state)


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _optimizer(groups: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(groups, lr=config.lr)


def _signature(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    preprocess: Preprocess,
    config: TrainConfig,
) -> dict[str, Any]:
    """What a checkpoint must agree with to be resumed (JSON-normalised)."""
    shapes = {k: list(v.shape) for k, v in trainable_state(model).items()}
    model_config = model.config() if callable(getattr(model, "config", None)) else None
    sig = {
        "train": config.result_fields(),
        "model": {"class": type(model).__qualname__, "config": model_config, "state": shapes},
        "data": {"train": len(train_set), "val": len(val_set) if val_set is not None else None},
        "preprocess": preprocess.to_dict(),
    }
    return json.loads(json.dumps(sig, sort_keys=True, default=str))


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + rank) % 2**32


# -- batches ---------------------------------------------------------------------------------
class _Batches:
    """(inputs, labels) on the device for one pass: raw images through Preprocess, or cached."""

    def __init__(
        self,
        fabric: Fabric,
        dataset: Dataset,
        preprocess: Preprocess,
        batch_sampler: Any,
        num_workers: int,
        cached: prefix_cache.Activations | None,
    ) -> None:
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


def _sequential(dataset: Dataset, batch_size: int) -> BatchSampler:
    return BatchSampler(range(len(dataset)), batch_size, drop_last=False)


def _val_shard(dataset: Dataset, fabric: Fabric) -> Dataset:
    """This process's share of the validation set (every k-th item; no padding, no repeats)."""
    if fabric.world_size == 1:
        return dataset
    return Subset(dataset, range(fabric.global_rank, len(dataset), fabric.world_size))


# -- passes ----------------------------------------------------------------------------------
def _evaluate(module: nn.Module, batches: _Batches, fabric: Fabric) -> tuple[float, float]:
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


def _train_epoch(
    wrapped: nn.Module,
    optimizer: Any,
    scheduler: Any,
    batches: _Batches,
    fabric: Fabric,
    config: TrainConfig,
    epoch: int,
    generator: torch.Generator | None,
) -> dict[str, float]:
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
        if bar.n % 10 == 0 or step == len(batches) - 1:
            seen = float(sums[2])
            elapsed = time.perf_counter() - start
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


# -- public API ------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    preprocess: Preprocess,
    config: TrainConfig,
    on_epoch_end: EpochCallback | None = None,
) -> TrainResult:
    """Train `model`'s trainable parameters; load the best validation epoch's weights back.

    `model` is an `AdaptedModel` (its `param_groups`, `on_epoch_start`, `extra_state`,
    `split_for_cache` are used) or any classifier module (all its parameters with
    requires_grad train). Datasets yield (uint8 CHW tensor, int label); `preprocess` runs
    batched on the device. History rows: epoch, lr (at the epoch's first step), train_loss,
    train_top1, val_loss, val_top1, epoch_time_s, data_wait_s (time blocked on the loader),
    train_step_s, images_per_s. With `config.checkpoint_dir`, a checkpoint is written
    atomically after every epoch and a later call for the same run resumes from it (a
    finished run returns at once); a checkpoint of a different run is an error.
    `on_epoch_end(epoch, row)` runs in the rank-0 training process (with a spawn strategy:
    here, after training, for every epoch run: it need not be picklable). With
    `val_set=None` the last epoch counts as best and early stopping is off. Strategies:
    "ddp" re-executes the current command for the other ranks, or joins the processes that
    `torchrun` started; "ddp_spawn" pickles the arguments into fresh processes and loads the
    best state back here (what a `kedro run` uses: the pipeline runs once). In multi-process
    runs every BatchNorm that trains is a SyncBatchNorm (`sync_trained_batchnorm`).
    """
    if len(train_set) == 0:
        raise ValueError("fit: the training set is empty")
    fabric = Fabric(
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        precision=config.precision,
    )
    if config.batch_size % fabric.world_size:
        raise ValueError(
            f"TrainConfig.batch_size={config.batch_size} is the global batch and must be "
            f"divisible by the number of processes ({fabric.world_size})"
        )
    spawned = config.strategy.endswith("_spawn")
    # spawned workers receive pickled arguments; Fabric refuses frozen dataclasses there
    result, best_state, best_extra = fabric.launch(
        _fit_worker,
        model,
        train_set,
        val_set,
        preprocess.to_dict() if spawned else preprocess,
        config,
        None if spawned else on_epoch_end,
    )
    if spawned and on_epoch_end is not None:
        for row in result.history:
            on_epoch_end(int(row["epoch"]), dict(row))
    # With spawn-based strategies the worker trained a copy: load its best state here.
    if isinstance(best_state, bytes):
        best_state = safetensors.torch.load(best_state)
    load_trainable_state(model, {k: v.to(_device_of(model)) for k, v in best_state.items()})
    if hasattr(model, "load_extra_state"):
        model.load_extra_state(best_extra)
    return result


def sync_trained_batchnorm(model: nn.Module, device: torch.device) -> list[str]:
    """Make every BatchNorm that trains a `torch.nn.SyncBatchNorm`; return their names.

    A BatchNorm trains when it runs in train mode under `model.train()` (a method's own
    generator, a fully fine-tuned backbone); frozen ones stay as they are, in eval mode.
    Statistics then cover the global batch, so k processes normalise as one does. On the
    CPU (gloo) the layers are `CpuSyncBatchNorm`: torch's SyncBatchNorm refuses CPU tensors.
    """
    was_training = model.training
    model.train()
    trained = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]
    model.train(was_training)
    for name, module in trained:
        parent, _, leaf = name.rpartition(".")
        if device.type == "cpu":
            synced = CpuSyncBatchNorm.convert(module)
        else:
            synced = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        setattr(model.get_submodule(parent) if parent else model, leaf, synced)
    return [name for name, _ in trained]


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _fit_worker(
    fabric: Fabric,
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    preprocess: Preprocess | dict[str, Any],
    config: TrainConfig,
    on_epoch_end: EpochCallback | None,
) -> tuple[TrainResult, dict[str, torch.Tensor] | bytes, dict[str, Any]]:
    if isinstance(preprocess, dict):
        preprocess = Preprocess.from_dict(preprocess)
    # the prefix cache (and its spill file) belongs to this call: gone when it returns
    with tempfile.TemporaryDirectory(prefix="visprompt-prefix-cache-") as spill_dir:
        return _train(
            fabric, model, train_set, val_set, preprocess, config, on_epoch_end, spill_dir
        )


def _train(
    fabric: Fabric,
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    preprocess: Preprocess,
    config: TrainConfig,
    on_epoch_end: EpochCallback | None,
    spill_dir: str,
) -> tuple[TrainResult, dict[str, torch.Tensor] | bytes, dict[str, Any]]:
    world, rank = fabric.world_size, fabric.global_rank
    per_rank = config.batch_size // world
    seed_everything(config.seed, verbose=False)
    frozen_digest = prefix_cache.frozen_state_digest(model)
    signature = _signature(model, train_set, val_set, preprocess, config) | {
        "frozen": frozen_digest
    }
    if world > 1:
        sync_trained_batchnorm(model, fabric.device)
    model = fabric.to_device(model)

    val_shard = _val_shard(val_set, fabric) if val_set is not None else None
    split, train_cached, val_cached, cache_info = _prefix_activations(
        model, frozen_digest, train_set, val_shard, preprocess, config, fabric, per_rank, spill_dir
    )
    train_module = split[1] if split is not None else model

    optimizer = _optimizer(optimizer_groups(model, config), config)
    sampler = DistributedSampler(
        train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed, drop_last=False
    )
    train_batches = _Batches(
        fabric,
        train_set,
        preprocess,
        BatchSampler(sampler, per_rank, drop_last=False),
        config.num_workers,
        train_cached,
    )
    scheduler = warmup_cosine(
        optimizer,
        steps_per_epoch=len(train_batches),
        epochs=config.epochs,
        warmup_epochs=config.warmup_epochs,
        min_lr=config.min_lr,
    )
    progress = _Progress()
    if config.checkpoint_dir:
        state = checkpoint.load_checkpoint(config.checkpoint_dir, signature)
        if state is not None:  # restore before setup: Fabric's optimizer wrapper copies state
            progress = _restore(state, model, optimizer, scheduler, fabric.device)
            log.info("resuming %s at epoch %d", config.checkpoint_dir, progress.next_epoch)
    wrapped, fabric_optimizer = fabric.setup(train_module, optimizer)
    val_batches = None
    if val_shard is not None:
        val_batches = _Batches(
            fabric,
            val_shard,
            preprocess,
            _sequential(val_shard, per_rank),
            config.num_workers,
            val_cached,
        )

    first_epoch = progress.next_epoch
    for epoch in range(first_epoch, config.epochs):
        if _should_stop(progress.history, progress.best_epoch, config.patience):
            break
        epoch_start = time.perf_counter()
        seed = _epoch_seed(config.seed, epoch, rank)
        seed_everything(seed, verbose=False)
        sampler.set_epoch(epoch)
        if hasattr(model, "on_epoch_start"):
            full_train = _sequential(train_set, per_rank)
            model.on_epoch_start(
                epoch, _Batches(fabric, train_set, preprocess, full_train, config.num_workers, None)
            )
        generator = None
        if config.augment == "flip_crop":
            generator = torch.Generator(device=fabric.device).manual_seed(seed)
        row: dict[str, float] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
        row |= _train_epoch(
            wrapped, fabric_optimizer, scheduler, train_batches, fabric, config, epoch, generator
        )
        row["val_loss"], row["val_top1"] = math.nan, math.nan
        if val_batches is not None:
            row["val_loss"], row["val_top1"] = _evaluate(train_module, val_batches, fabric)
        row["epoch_time_s"] = time.perf_counter() - epoch_start
        if epoch == first_epoch:  # this call's cache build is training time too (once)
            progress.train_time_s += cache_info["build_s"]
        progress.record(row, model, improved=val_batches is None)
        if config.checkpoint_dir:
            if fabric.is_global_zero:
                _save(config.checkpoint_dir, signature, model, optimizer, scheduler, progress)
            fabric.barrier()
        if on_epoch_end is not None and fabric.is_global_zero:
            on_epoch_end(epoch, dict(row))

    result = TrainResult(
        history=progress.history,
        best_epoch=progress.best_epoch,
        best_val_top1=progress.best_top1,
        train_time_s=progress.train_time_s,
        epochs_run=len(progress.history),
        cache=cache_info,
    )
    if config.strategy.endswith("_spawn"):  # by value: shared tensors die with the worker
        return result, safetensors.torch.save(progress.best_state), progress.best_extra
    return result, progress.best_state, progress.best_extra


@dataclass
class _Progress:
    """What the loop carries from epoch to epoch, and what a checkpoint restores."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_top1: float = -math.inf
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    best_extra: dict[str, Any] = field(default_factory=dict)
    train_time_s: float = 0.0

    @property
    def next_epoch(self) -> int:
        return int(self.history[-1]["epoch"]) + 1 if self.history else 0

    def record(self, row: dict[str, float], model: nn.Module, improved: bool) -> None:
        """Append an epoch; keep a copy of the weights when validation top-1 improved."""
        self.history.append(row)
        self.train_time_s += row["epoch_time_s"]
        if improved or row["val_top1"] > self.best_top1:
            self.best_epoch, self.best_top1 = int(row["epoch"]), float(row["val_top1"])
            self.best_state, self.best_extra = _cpu_copy(trainable_state(model)), _extra(model)


def _save(
    directory: str,
    signature: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: _Progress,
) -> None:
    checkpoint.save_checkpoint(
        directory,
        {
            "digest": checkpoint.signature_digest(signature),
            "signature": json.dumps(signature, sort_keys=True),
            "epoch": progress.next_epoch - 1,
            "trainable": _cpu_copy(trainable_state(model)),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "extra_state": json.dumps(_extra(model)),
            "history": progress.history,
            "best_epoch": progress.best_epoch,
            "best_val_top1": progress.best_top1,
            "best_state": progress.best_state,
            "best_extra_state": json.dumps(progress.best_extra),
            "train_time_s": progress.train_time_s,
        },
    )


def _restore(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    device: torch.device,
) -> _Progress:
    load_trainable_state(model, {k: v.to(device) for k, v in state["trainable"].items()})
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if hasattr(model, "load_extra_state"):
        model.load_extra_state(json.loads(state["extra_state"]))
    return _Progress(
        history=state["history"],
        best_epoch=state["best_epoch"],
        best_top1=state["best_val_top1"],
        best_state=state["best_state"],
        best_extra=json.loads(state["best_extra_state"]),
        train_time_s=state["train_time_s"],
    )


def _prefix_activations(
    model: nn.Module,
    frozen_digest: str,
    train_set: Dataset,
    val_shard: Dataset | None,
    preprocess: Preprocess,
    config: TrainConfig,
    fabric: Fabric,
    batch_size: int,
    spill_dir: str,
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(split or None, train activations, val activations, info) for prefix caching.

    `frozen_digest` (the model's frozen tensors, hashed once per `fit`) keys the reuse of a
    cache an earlier `fit` built (`prefix_cache.reuse_key`).
    """
    start = time.perf_counter()
    info: dict[str, Any] = {"train": "off", "val": "off", "build_s": 0.0}
    split = _cache_split(model, config)
    if split is None:
        return None, None, None, info
    common = dict(
        device=fabric.device, batch_size=batch_size, spill_dir=spill_dir, autocast=fabric.autocast
    )
    settings = (preprocess, str(fabric.device), batch_size, config.precision)

    def activations(dataset: Dataset, max_bytes: int) -> tuple[Any, str]:
        key = prefix_cache.reuse_key(split[0], frozen_digest, dataset, *settings)
        kept = prefix_cache.reused(key)
        if kept is not None:
            return kept, "reused"
        built, status = prefix_cache.cached_activations(
            split[0], dataset, preprocess, **(common | {"max_bytes": max_bytes})
        )
        prefix_cache.keep(key, built)
        return built, status

    train, info["train"] = activations(train_set, config.cache_max_bytes)
    val = None
    if val_shard is not None:
        val, info["val"] = activations(val_shard, max(0, config.cache_max_bytes - train.nbytes))
    info["build_s"] = time.perf_counter() - start
    return split, train, val, info


def _cache_split(model: nn.Module, config: TrainConfig) -> tuple[nn.Module, nn.Module] | None:
    if not config.cache_prefix or not hasattr(model, "split_for_cache"):
        return None
    if config.augment != "none":
        log.warning("cache_prefix ignored: augment=%r changes inputs every epoch", config.augment)
        return None
    if config.precision not in ("32-true", "64-true") and not config.precision.endswith("mixed"):
        log.warning("cache_prefix ignored: precision %s converts the module", config.precision)
        return None
    return model.split_for_cache()


def _extra(model: nn.Module) -> dict[str, Any]:
    return copy.deepcopy(model.extra_state()) if hasattr(model, "extra_state") else {}


def _should_stop(history: list[dict[str, float]], best_epoch: int, patience: int | None) -> bool:
    """True when the last `patience` epochs brought no better validation top-1."""
    return patience is not None and bool(history) and history[-1]["epoch"] - best_epoch >= patience


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
    device = _device_of(model)
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
