"""Per-epoch training checkpoints: written atomically, read back without running code.

A checkpoint holds only what a resume needs: the trainable state (not the frozen backbone),
the best state so far, optimizer and scheduler state, the epoch, the history, the model's
JSON `extra_state` and the run's signature (config, model, frozen weights, data,
preprocessing). Random
number generators are re-derived from (seed, epoch, rank) at the start of every epoch, so
no generator state has to be stored for a resumed run to repeat an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from visprompt.atomic import atomic_path

FILE_NAME = "last.ckpt"
FORMAT = 1


def signature_digest(signature: dict[str, Any]) -> str:
    """sha256 of the run's signature (stable JSON)."""
    return hashlib.sha256(json.dumps(signature, sort_keys=True).encode()).hexdigest()


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` to `directory/last.ckpt` atomically."""
    final = Path(directory) / FILE_NAME
    with atomic_path(final) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)
    return final


def load_checkpoint(directory: str | Path, signature: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint in `directory`, or None when there is none.

    A checkpoint written by a different run (other options, model or data) is refused with
    an error naming what differs, rather than silently restarting over it: the old run is
    kept until the user deletes it or picks another `checkpoint_dir`.
    """
    path = Path(directory) / FILE_NAME
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {state.get('format')} != {FORMAT}")
    if state["digest"] != signature_digest(signature):
        stored = json.loads(state["signature"])
        diff = sorted(_differences(stored, signature))
        raise ValueError(
            f"{path} belongs to a different training run (differs in: {', '.join(diff)}). "
            "Delete that checkpoint directory to start fresh, or set another checkpoint_dir."
        )
    return state


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in set(old) | set(new):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')} ({old!r} -> {new!r})"]
