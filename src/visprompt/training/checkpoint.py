"""Per-epoch checkpoints through Fabric: what a resume needs, written atomically, and refused
when they belong to another run.

A checkpoint holds the trainable state (not the frozen backbone), optimizer and scheduler
state, the model's JSON `extra_state`, the loop's `Progress` (history, best epoch and its
state) and the run's signature (config, model, frozen weights, data, preprocessing); no
generator state (the loop reseeds every epoch).
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
    """Fabric's checkpoint writer, renaming a finished sibling file over the checkpoint
    (Lightning's own stages the file in the system's temporary folder and `shutil.move`s it,
    which copies in place across file systems: a kill mid-copy leaves it torn)."""

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


def load_best(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(best trainable state, its extra state) of the checkpoint in `directory`, on the CPU:
    what a finished run's model is, without restoring the rest."""
    state = torch.load(Path(directory) / FILE_NAME, map_location="cpu", weights_only=True)
    return state["best_state"], json.loads(state["best_extra_state"])


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
        return patience is not None and self.next_epoch - 1 - self.best_epoch >= patience


@dataclass
class RunCheckpoint:
    """One run's `directory/last.ckpt` (no checkpoints when `directory` is None), written
    and read through `fabric` for the objects that training changes."""

    fabric: Fabric
    directory: str | None
    signature: dict[str, Any]
    model: AdaptedModel
    optimizer: torch.optim.Optimizer
    scheduler: Any

    def save(self, progress: Progress) -> None:
        """Write the checkpoint (on global rank 0; every rank calls this)."""
        if self.directory is None:
            return
        state = {
            "format": FORMAT,
            "digest": signature_digest(self.signature),
            "signature": json.dumps(self.signature, sort_keys=True),
            "epoch": progress.next_epoch - 1,
            "trainable": _cpu_copy(self.model.prompt_state_dict()),
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "extra_state": json.dumps(self.model.extra_state()),
            **vars(progress),
        }
        self.fabric.save(Path(self.directory) / FILE_NAME, state)

    def resume(self) -> Progress:
        """The stored progress, its state loaded into model, optimizer and scheduler (none
        stored: a fresh one). Another run's checkpoint (other options, model or data) is an
        error naming what differs, not silently restarted over: it is kept until the user
        deletes it or picks another `checkpoint_dir`."""
        path = Path(self.directory or "") / FILE_NAME
        if self.directory is None or not path.is_file():
            return Progress()
        state = self.fabric.load(path, weights_only=True)
        if state.get("format") != FORMAT:
            raise ValueError(f"{path}: checkpoint format {state.get('format')} != {FORMAT}")
        if state["digest"] != signature_digest(self.signature):
            diff = sorted(_differences(json.loads(state["signature"]), self.signature))
            raise ValueError(
                f"{path} belongs to a different training run (differs in: {', '.join(diff)}). "
                "Delete that checkpoint directory to start fresh, or set another checkpoint_dir."
            )
        self.model.load_prompt_state_dict(state["trainable"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.model.load_extra_state(json.loads(state["extra_state"]))
        return Progress(**{f.name: state[f.name] for f in fields(Progress)})


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in set(old) | set(new):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')} ({old!r} -> {new!r})"]
