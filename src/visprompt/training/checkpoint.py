"""Per-epoch checkpoints through Fabric: what a resume needs, written atomically, and refused
when they belong to another run.

A checkpoint holds the trainable state (not the frozen backbone), optimizer and scheduler
state, the model's JSON `extra_state`, the loop's `Progress` (history, best epoch and its
state) and the run's signature (config, model, frozen weights, data, preprocessing).
Random generators are re-derived from (seed, epoch, rank) at the start of every epoch, so
none is stored for a resumed run to repeat an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.fabric import Fabric
from lightning.fabric.plugins import TorchCheckpointIO
from torch.utils.data import Dataset

from visprompt.atomic import atomic_path

if TYPE_CHECKING:
    from visprompt.methods.base import AdaptedModel
    from visprompt.training.config import Preprocess, TrainConfig

FILE_NAME = "last.ckpt"
FORMAT = 1


class AtomicCheckpointIO(TorchCheckpointIO):
    """Fabric's checkpoint writer, renaming a finished sibling file over the checkpoint.

    Lightning's own writer stages the bytes in the system's temporary folder and
    `shutil.move`s them, which copies into the target in place across file systems: a
    kill mid-copy would leave a torn checkpoint behind.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def signature(
    model: AdaptedModel,
    train_set: Dataset,
    val_set: Dataset | None,
    preprocess: Preprocess,
    config: TrainConfig,
    frozen_digest: str,
) -> dict[str, Any]:
    """What a checkpoint must agree with to be resumed (JSON-normalised)."""
    shapes = {k: list(v.shape) for k, v in model.prompt_state_dict().items()}
    sig = {
        "train": config.result_fields(),
        "model": {"class": type(model).__qualname__, "config": model.config(), "state": shapes},
        "data": {"train": len(train_set), "val": len(val_set) if val_set is not None else None},
        "preprocess": preprocess.to_dict(),
        "frozen": frozen_digest,
    }
    return json.loads(json.dumps(sig, sort_keys=True, default=str))


def signature_digest(sig: dict[str, Any]) -> str:
    """sha256 of the run's signature (stable JSON)."""
    return hashlib.sha256(json.dumps(sig, sort_keys=True).encode()).hexdigest()


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


@dataclass
class Progress:
    """The run so far: its history, its best epoch by validation top-1 with that epoch's
    trainable and extra state (early stopping counts from it), and its training time."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_top1: float = -math.inf
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    best_extra_state: str = "{}"  # JSON, as a checkpoint stores it
    train_time_s: float = 0.0

    @property
    def next_epoch(self) -> int:
        return int(self.history[-1]["epoch"]) + 1 if self.history else 0

    def record(self, row: dict[str, float], model: AdaptedModel, improved: bool) -> None:
        """Append an epoch; keep a copy of the weights when validation top-1 improved."""
        self.history.append(row)
        self.train_time_s += row["epoch_time_s"]
        if improved or row["val_top1"] > self.best_val_top1:
            self.best_epoch, self.best_val_top1 = int(row["epoch"]), float(row["val_top1"])
            self.best_state = _cpu_copy(model.prompt_state_dict())
            self.best_extra_state = json.dumps(model.extra_state())

    def should_stop(self, patience: int | None) -> bool:
        """True when the last `patience` epochs brought no better validation top-1."""
        last = self.next_epoch - 1
        return patience is not None and bool(self.history) and last - self.best_epoch >= patience


def save(
    fabric: Fabric,
    directory: str,
    sig: dict[str, Any],
    model: AdaptedModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: Progress,
) -> None:
    """Write `directory/last.ckpt` (on global rank 0; every rank calls this)."""
    state = {
        "format": FORMAT,
        "digest": signature_digest(sig),
        "signature": json.dumps(sig, sort_keys=True),
        "epoch": progress.next_epoch - 1,
        "trainable": _cpu_copy(model.prompt_state_dict()),
        "optimizer": optimizer,
        "scheduler": scheduler,
        "extra_state": json.dumps(model.extra_state()),
        **vars(progress),
    }
    fabric.save(Path(directory) / FILE_NAME, state)


def resume(
    fabric: Fabric,
    directory: str | None,
    sig: dict[str, Any],
    model: AdaptedModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> Progress:
    """The progress stored in `directory`, its state loaded into the model, optimizer and
    scheduler; a fresh `Progress` when there is no checkpoint.

    A checkpoint written by a different run (other options, model or data) is refused with
    an error naming what differs, rather than silently restarting over it: the old run is
    kept until the user deletes it or picks another `checkpoint_dir`.
    """
    path = Path(directory or "") / FILE_NAME
    if directory is None or not path.is_file():
        return Progress()
    state = fabric.load(path, weights_only=True)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {state.get('format')} != {FORMAT}")
    if state["digest"] != signature_digest(sig):
        diff = sorted(_differences(json.loads(state["signature"]), sig))
        raise ValueError(
            f"{path} belongs to a different training run (differs in: {', '.join(diff)}). "
            "Delete that checkpoint directory to start fresh, or set another checkpoint_dir."
        )
    model.load_prompt_state_dict(state["trainable"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    model.load_extra_state(json.loads(state["extra_state"]))
    return Progress(**{f.name: state[f.name] for f in fields(Progress)})


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in set(old) | set(new):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')} ({old!r} -> {new!r})"]
