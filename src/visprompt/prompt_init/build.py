"""Build SPT inits: k-means inits (and all inits of a plain batch stream) share one no-grad
pass over every image, in reservoirs planned from a byte budget; sampling inits of a
random-access source run only the images their tokens come from.

The budget holds p tokens per layer for `random` and pooling inits and splits the rest
evenly over the k-means layers, so the bytes held never depend on the number of images
(one batch's activations and a growing reservoir's copy come on top).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from visprompt.backbones import tensors_sha256
from visprompt.progress import progress_bar
from visprompt.prompt_init.collect import InitCollector, InitConfig
from visprompt.prompt_init.reservoir import Reservoir
from visprompt.prompt_init.sampling import candidates_per_image, sample_prompts
from visprompt.prompt_init.stream import IndexedImages
from visprompt.prompt_init.tokens import depth, layer_tokens


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class PromptInit:
    """Initial prompts (layers, p, D) on the CPU and what produced them."""

    prompts: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)


def kmeans_capacity(
    configs: Mapping[str, InitConfig], num_layers: int, dim: int, budget_bytes: int
) -> int:
    """Rows per layer each k-means sample may hold so that everything fits `budget_bytes`."""
    row = Reservoir.bytes_per_row(dim)
    fixed = sum(
        len(c.layers(num_layers)) * c.num_prompts * row
        for c in configs.values()
        if c.strategy != "kmeans"
    )
    clustered = [c for c in configs.values() if c.strategy == "kmeans"]
    kmeans_layers = sum(len(c.layers(num_layers)) for c in clustered)
    if fixed > budget_bytes:
        raise ValueError(
            f"prompt_init memory budget {budget_bytes} B cannot even hold the sampled prompts "
            f"({fixed} B); raise memory_budget_mb"
        )
    if not kmeans_layers:
        return 0
    capacity = (budget_bytes - fixed) // (kmeans_layers * row)
    smallest = min(c.num_prompts for c in clustered)
    if capacity < smallest:
        need = fixed + kmeans_layers * smallest * row
        raise ValueError(
            f"prompt_init memory budget {budget_bytes} B leaves {capacity} tokens per layer for "
            f"k-means, fewer than num_prompts={smallest}; raise memory_budget_mb (>= {need} B)"
        )
    return int(capacity)


def build_prompt_inits(
    backbone: nn.Module,
    images: IndexedImages | Iterable[torch.Tensor],
    configs: Mapping[str, InitConfig],
    *,
    memory_budget_bytes: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    total_batches: int | None = None,
    lineage: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, PromptInit]:
    """Every init of `configs` from the tokens `backbone` makes of `images` (float NCHW).

    `lineage` (backbone_sha256, data_hash, ...) is copied into each metadata; seconds per
    layer count the forward up to that layer, the init's own work and its final step.
    `dtype` (e.g. bfloat16) runs the forwards under autocast, as the training run does.
    """
    if not configs:
        raise ValueError("prompt_init: no initialisation configured")
    device = torch.device(device)
    backbone = backbone.to(device).eval()
    indexed = isinstance(images, IndexedImages)
    lineage = dict(lineage or {})
    lineage.setdefault("backbone_sha256", tensors_sha256(backbone.state_dict().items()))
    common = {
        "memory_budget_bytes": int(memory_budget_bytes),
        "device": str(device),
        "dtype": str(dtype or torch.float32),
    } | lineage
    streamed = {n: c for n, c in configs.items() if not indexed or c.strategy == "kmeans"}
    results = {}
    if streamed:
        if indexed:
            total_batches = images.num_batches
        results = _streamed(
            backbone, images, streamed, memory_budget_bytes, device, dtype, total_batches, progress
        )
    for name, config in configs.items():
        if name not in streamed:
            results[name] = _sampled(name, backbone, images, config, device, dtype)
    return {
        name: PromptInit(results[name].prompts, results[name].metadata | common) for name in configs
    }


def _sampled(
    name: str,
    backbone: nn.Module,
    images: IndexedImages,
    config: InitConfig,
    device: torch.device,
    dtype: torch.dtype | None,
) -> PromptInit:
    """A sampling init drawn from a random-access source: only its images run."""
    start = time.perf_counter()
    prompts, seconds, forwarded = sample_prompts(backbone, images, config, device, dtype)
    num_patches = int(backbone.patch_embed.num_patches)
    candidates = images.num_images * candidates_per_image(num_patches, config)
    return PromptInit(
        prompts,
        _metadata(name, config, prompts, seconds)
        | {
            "collection": "sampled (indices drawn first, only their images run)",
            "images_used": images.num_images,
            "images_forwarded": forwarded,
            "tokens_per_layer": dict.fromkeys(map(str, seconds), images.num_images * num_patches),
            "layer_stats": {str(k): {"candidates": candidates} for k in seconds},
            "seconds_wall": time.perf_counter() - start,
        },
    )


def _metadata(
    name: str, config: InitConfig, prompts: torch.Tensor, seconds: Mapping[int, float]
) -> dict[str, Any]:
    return {
        "name": name,
        "strategy": config.strategy,
        "variant": config.variant,
        "num_prompts": config.num_prompts,
        "layers": [int(k) for k in seconds],
        "shape": list(prompts.shape),
        "seed": config.seed,
        "seconds_per_layer": {str(k): float(v) for k, v in seconds.items()},
        "seconds_total": float(sum(seconds.values())),
    }


def _streamed(
    backbone: nn.Module,
    batches: Iterable[torch.Tensor],
    configs: Mapping[str, InitConfig],
    budget: int,
    device: torch.device,
    dtype: torch.dtype | None,
    total_batches: int | None,
    progress: bool,
) -> dict[str, PromptInit]:
    """One no-grad pass over every batch feeding every init's per-layer reservoirs."""
    start_pass = time.perf_counter()
    num_layers, dim = depth(backbone), int(backbone.embed_dim)
    capacity = kmeans_capacity(configs, num_layers, dim, budget)
    collectors = {
        name: InitCollector(c, num_layers, dim, kmeans_capacity=capacity, device=device)
        for name, c in configs.items()
    }
    last = max(max(c.layers) for c in collectors.values())
    forward_seconds = dict.fromkeys(range(last + 1), 0.0)
    images = peak = 0
    for batch in progress_bar(
        batches, total=total_batches, desc="prompt_init", disable=not progress
    ):
        batch = batch.to(device, non_blocking=True)
        images += batch.shape[0]
        _sync(device)
        start = time.perf_counter()
        for layer, tokens in layer_tokens(backbone, batch, last, dtype):
            _sync(device)
            forward_seconds[layer] += time.perf_counter() - start
            for collector in collectors.values():
                collector.update(layer, tokens)
            _sync(device)
            start = time.perf_counter()
        peak = max(peak, sum(c.nbytes for c in collectors.values()))
    if images == 0:
        raise ValueError("prompt_init: the image stream was empty (no training images?)")
    results = {}
    for name, collector in collectors.items():
        prompts = collector.finalize()
        seconds = {
            layer: forward_seconds[layer] + collector.seconds[layer] for layer in collector.layers
        }
        results[name] = PromptInit(
            prompts,
            _metadata(name, collector.config, prompts, seconds)
            | {
                "collection": "streamed (one pass over every image, reservoir per layer)",
                "images_used": images,
                "images_forwarded": images,
                "tokens_per_layer": {str(k): v for k, v in collector.tokens_seen.items()},
                "layer_stats": {str(k): v for k, v in collector.stats.items()},
                "bytes_held_peak_of_pass": int(peak),
                "shared_pass_with": sorted(n for n in configs if n != name),
                "seconds_wall": time.perf_counter() - start_pass,
            },
        )
    return results
