"""Peak memory of one call, measured the same way on CPU and GPU: the bytes of the resident
tensors of the measured work (weights, optimizer state, batch) plus the highest allocation
during the call above the level just before it.

The GPU figure comes from CUDA's allocator statistics. The CPU has no high-water mark, so the
call runs once under the torch profiler with `profile_memory=True` and the peak of the running
sum of its allocations and frees is taken: tensor storage only, as on the GPU, and unaffected
by other processes or other models alive in this process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import torch
from torch.profiler import ProfilerActivity, profile

from visprompt.profiling.timing import synchronize

MEMORY_EVENT = "[memory]"

# libkineto (behind the profiler) logs every start and stop, and an ERROR from its GPU probe
# on a machine without one; level 6 silences all of it (an explicit setting wins).
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
