"""Efficiency profile of several models measured side by side in one process.

Every figure is a median over interleaved rounds (A, B, C, then A, B, C, ...), so a machine
that gets busier halfway slows every model alike: the ratios to the bare frozen backbone
measured in the same run are what carries over from one machine to another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from visprompt.methods import count_parameters
from visprompt.profiling.flops import forward_flops
from visprompt.profiling.memory import peak_memory_mb
from visprompt.profiling.steps import make_infer_step, make_train_step
from visprompt.profiling.timing import percentile_ms, resolve_device, time_call
from visprompt.progress import progress_bar
from visprompt.training.placement import Placement

REFERENCE = "backbone"

#: Figure -> name of its ratio to the reference row.
RATIOS = {
    "gflops": "gflops_ratio",
    "train_step_ms": "train_step_ratio",
    "throughput_ips": "throughput_ratio",
    "latency_p50_ms": "latency_ratio",
    "peak_train_mem_mb": "train_mem_ratio",
    "peak_infer_mem_mb": "infer_mem_ratio",
}

#: Columns of an efficiency table, in order.
COLUMNS = (
    "method",
    "trainable_params",
    "total_params",
    "gflops",
    "train_step_ms",
    "throughput_ips",
    "latency_p50_ms",
    "latency_p95_ms",
    "peak_train_mem_mb",
    "peak_infer_mem_mb",
    *RATIOS.values(),
)


@dataclass(frozen=True)
class ProfileSettings:
    """How to measure. Batch sizes: training step, throughput; latency always uses 1."""

    image_size: int = 224
    train_batch_size: int = 32
    infer_batch_size: int = 64
    warmup: int = 2
    repeats: int = 10
    latency_repeats: int = 50
    device: str = "auto"
    #: Lightning precision string; half precisions (`bf16-mixed`, ...) time under autocast
    precision: str = "32-true"
    #: models and batches in channels_last memory order (NHWC: faster convolutions on GPUs)
    channels_last: bool = False
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("image_size", "train_batch_size", "infer_batch_size", "repeats"):
            if (value := getattr(self, name)) < 1:
                raise ValueError(f"profiling setting '{name}' must be >= 1, got {value}")
        if self.warmup < 0 or self.latency_repeats < 2:
            raise ValueError("profiling settings need warmup >= 0 and latency_repeats >= 2")


def profile_models(
    models: Mapping[str, nn.Module], settings: ProfileSettings, reference: str = REFERENCE
) -> list[dict[str, Any]]:
    """One row per model (see COLUMNS), ratios relative to `models[reference]`: the bare
    frozen backbone, whose training step is a no-grad forward, the floor of every method."""
    if reference not in models:
        raise ValueError(f"reference model '{reference}' missing; got {sorted(models)}")
    if count_parameters(models[reference])["trainable"]:
        raise ValueError(
            f"reference model '{reference}' has trainable parameters: pass the bare backbone "
            "frozen (visprompt.backbones.freeze), so its training step is the no-grad floor"
        )
    device = resolve_device(settings.device)
    models = {
        name: m.to(device, memory_format=_memory_format(settings)) for name, m in models.items()
    }
    batch = random_images(settings.train_batch_size, settings, device)
    infer_batch = random_images(settings.infer_batch_size, settings, device)
    single = infer_batch[:1]
    rows = {name: _static_figures(name, m, single) for name, m in models.items()}
    with Placement(device, settings.precision).autocast():
        _measure(models, rows, settings, device, batch, infer_batch)
    return add_ratios(list(rows.values()), reference)


def _measure(
    models: Mapping[str, nn.Module],
    rows: dict[str, dict[str, Any]],
    settings: ProfileSettings,
    device: torch.device,
    batch: torch.Tensor,
    infer_batch: torch.Tensor,
) -> None:
    """Add the timing and memory figures of every model to its row."""
    single = infer_batch[:1]
    train = {name: make_train_step(m, batch) for name, m in models.items()}
    infer = {name: make_infer_step(m, infer_batch) for name, m in models.items()}
    latency = {name: make_infer_step(m, single) for name, m in models.items()}
    train_s = interleaved_timings(train, settings, settings.repeats, "train step")
    infer_s = interleaved_timings(infer, settings, settings.repeats, "throughput")
    lat_s = interleaved_timings(latency, settings, settings.latency_repeats, "latency")
    for name, row in rows.items():
        row["train_step_ms"] = percentile_ms(train_s[name], 50)
        row["throughput_ips"] = settings.infer_batch_size / (percentile_ms(infer_s[name], 50) / 1e3)
        row["latency_p50_ms"] = percentile_ms(lat_s[name], 50)
        row["latency_p95_ms"] = percentile_ms(lat_s[name], 95)
        row["peak_train_mem_mb"] = peak_memory_mb(train[name], device, train[name].resident())
        resident = [*models[name].parameters(), *models[name].buffers(), infer_batch]
        row["peak_infer_mem_mb"] = peak_memory_mb(infer[name], device, resident)


def add_ratios(rows: list[dict[str, Any]], reference: str = REFERENCE) -> list[dict[str, Any]]:
    """Add every RATIOS column (figure / the reference row's figure); order as COLUMNS."""
    ref = next((r for r in rows if r["method"] == reference), None)
    if ref is None:
        raise ValueError(f"no row named '{reference}' to compute ratios against")
    out = []
    for row in rows:
        ratios = {r: row[f] / ref[f] if ref[f] else float("nan") for f, r in RATIOS.items()}
        row = row | ratios
        extra = {k: v for k, v in row.items() if k not in COLUMNS}
        out.append({c: row[c] for c in COLUMNS} | extra)
    return out


def _static_figures(name: str, model: nn.Module, single: torch.Tensor) -> dict[str, Any]:
    counts = count_parameters(model)
    model.eval()
    return {
        "method": name,
        "trainable_params": counts["trainable"],
        "total_params": counts["total"],
        "gflops": forward_flops(model, single) / 1e9,
    }


def interleaved_timings(
    steps: Mapping[str, Callable[[], object]], settings: ProfileSettings, repeats: int, what: str
) -> dict[str, list[float]]:
    """Seconds per call of each step: `settings.warmup` untimed calls each, then timed rounds."""
    device = resolve_device(settings.device)
    for step in steps.values():
        for _ in range(settings.warmup):
            step()
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in progress_bar(range(repeats), desc=what, disable=not settings.progress, leave=False):
        for name, step in steps.items():
            seconds[name].append(time_call(step, device))
    return seconds


def random_images(n: int, settings: ProfileSettings, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(settings.seed)
    shape = (n, 3, settings.image_size, settings.image_size)
    images = torch.randn(shape, generator=generator)
    return images.to(device, memory_format=_memory_format(settings))


def _memory_format(settings: ProfileSettings) -> torch.memory_format:
    return torch.channels_last if settings.channels_last else torch.contiguous_format
