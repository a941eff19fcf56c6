"""One no-grad pass of a frozen ViT over a stream of image batches feeds every requested
initialisation at once; the memory they hold is planned up front from a byte budget.

Budget: `random` and pooling inits hold p tokens per layer; the rest of the budget is
split evenly over the layers of the `kmeans` inits, as their sample capacity. The bytes
held (tensor storage of every reservoir) never exceed the budget, whatever the number of
images; the transient memory of one batch (its activations) comes on top and is bounded
by the batch size.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from visprompt.prompt_init.collect import InitCollector, InitConfig
from visprompt.prompt_init.reservoir import Reservoir
from visprompt.prompt_init.tokens import depth, layer_tokens


@dataclass
class PromptInit:
    """Initial prompts (layers, p, D) on the CPU and what produced them."""

    prompts: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)


def state_sha256(model: nn.Module) -> str:
    """A checksum of a model's weights (names, shapes, bytes), for lineage in metadata."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_prompt_inits(
    backbone: nn.Module,
    batches: Iterable[torch.Tensor],
    configs: Mapping[str, InitConfig],
    *,
    memory_budget_bytes: int,
    device: torch.device | str = "cpu",
    total_batches: int | None = None,
    lineage: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, PromptInit]:
    """Run `backbone` once over `batches` (normalised float NCHW) and build every init.

    `lineage` (e.g. backbone_sha256, data_hash) is copied into each metadata; a missing
    backbone_sha256 is computed from the weights. Seconds per layer count the forward
    pass up to that layer (shared by every init of the pass), the init's own streaming
    work and its final step (k-means or the draw).
    """
    if not configs:
        raise ValueError("prompt_init: no initialisation configured")
    device = torch.device(device)
    backbone = backbone.to(device).eval()
    num_layers, dim = depth(backbone), int(backbone.embed_dim)
    capacity = kmeans_capacity(configs, num_layers, dim, memory_budget_bytes)
    collectors = {
        name: InitCollector(c, num_layers, dim, kmeans_capacity=capacity, device=device)
        for name, c in configs.items()
    }
    last = max(max(c.layers) for c in collectors.values())
    forward_seconds = dict.fromkeys(range(last + 1), 0.0)
    images = peak = 0
    for batch in tqdm(batches, total=total_batches, desc="prompt_init", disable=not progress):
        batch = batch.to(device, non_blocking=True)
        images += batch.shape[0]
        _sync(device)
        start = time.perf_counter()
        for layer, tokens in layer_tokens(backbone, batch, last):
            _sync(device)
            forward_seconds[layer] += time.perf_counter() - start
            for collector in collectors.values():
                collector.update(layer, tokens)
            _sync(device)
            start = time.perf_counter()
        peak = max(peak, sum(c.nbytes for c in collectors.values()))
    if images == 0:
        raise ValueError("prompt_init: the image stream was empty (no training images?)")
    lineage = dict(lineage or {})
    lineage.setdefault("backbone_sha256", state_sha256(backbone))
    results = {}
    for name, collector in collectors.items():
        prompts = collector.finalize()
        seconds = {
            str(layer): forward_seconds[layer] + collector.seconds[layer]
            for layer in collector.layers
        }
        results[name] = PromptInit(
            prompts=prompts,
            metadata={
                "name": name,
                "strategy": collector.config.strategy,
                "variant": collector.config.variant,
                "num_prompts": collector.config.num_prompts,
                "layers": collector.layers,
                "shape": list(prompts.shape),
                "seed": collector.config.seed,
                "images_used": images,
                "tokens_seen_per_layer": {str(k): v for k, v in collector.tokens_seen.items()},
                "layer_stats": {str(k): v for k, v in collector.stats.items()},
                "seconds_per_layer": seconds,
                "seconds_total": sum(seconds.values()),
                "memory_budget_bytes": int(memory_budget_bytes),
                "bytes_held_peak_all_inits": int(peak),
                "shared_pass_with": sorted(n for n in configs if n != name),
                "device": str(device),
                **lineage,
            },
        )
    return results
