"""Peak memory of one call, measured the same way on CPU and GPU.

peak = bytes live before the call that belong to the measured work (model tensors,
optimizer state, input batch: passed in as `resident_bytes`) + the highest amount of
memory allocated *during* the call above what was allocated just before it.

- GPU: the extra comes from CUDA's caching-allocator statistics
  (`max_memory_allocated` after `reset_peak_memory_stats`, minus `memory_allocated` before).
- CPU: there is no allocator high-water mark, so the call runs once under the torch
  profiler with `profile_memory=True`; every allocation and free of torch's CPU allocator
  is recorded with its size and time, and the peak of their running sum is the extra. It
  counts tensor storage only (not Python objects or library scratch buffers), which is
  what the GPU figure counts too. Other processes and other models alive in this process
  do not affect either figure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import torch
from torch.profiler import ProfilerActivity, profile

from visprompt.profiling.timing import synchronize

MEMORY_EVENT = "[memory]"

# libkineto (behind the torch profiler) logs a start and a stop line on every use, and on a
# machine without a GPU an ERROR from its GPU probe; level 6 is above all of its levels.
# Read when the profiler first starts; an explicit KINETO_LOG_LEVEL wins.
os.environ.setdefault("KINETO_LOG_LEVEL", "6")


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages among `tensors` (shared weights count once)."""
    storages: dict[int, int] = {}
    for t in tensors:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(storages.values())


def peak_extra_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Highest memory allocated during `fn()` above the level just before it."""
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - before)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == MEMORY_EVENT]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        if event.device_type() == torch.autograd.DeviceType.CPU:
            live += event.nbytes()
            peak = max(peak, live)
    return peak


def peak_memory_mb(
    fn: Callable[[], object], device: torch.device, resident: Iterable[torch.Tensor]
) -> float:
    """Peak memory of `fn()` in MiB: resident tensors plus the peak extra allocation."""
    return (tensor_bytes(resident) + peak_extra_bytes(fn, device)) / 2**20
