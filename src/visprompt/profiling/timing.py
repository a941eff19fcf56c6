"""Wall-clock timing that is honest on both CPU and GPU: synchronise, warm up, repeat."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else the CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a timer measures work done rather than work launched."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of `fn` takes, device work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def percentile_ms(seconds: list[float], q: float) -> float:
    """The q-th percentile (0-100) of a list of durations, in milliseconds."""
    if not seconds:
        raise ValueError("no timings to summarise: repeats must be >= 1")
    return float(np.percentile(np.asarray(seconds) * 1e3, q))
