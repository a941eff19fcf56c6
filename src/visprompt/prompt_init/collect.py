"""What one init keeps per layer while tokens stream past, and what it makes of it.

`random` keeps a uniform sample of p tokens, `mean_pool`/`max_pool` the same of
window-pooled tokens, `kmeans` a sample of up to `capacity` tokens clustered into p centres.
Every sample is a `Reservoir`, so the bytes held never exceed what was planned for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from visprompt.prompt_init.kmeans import kmeans
from visprompt.prompt_init.pooling import pool_windows
from visprompt.prompt_init.reservoir import Reservoir

STRATEGIES: tuple[str, ...] = ("kmeans", "random", "mean_pool", "max_pool")
VARIANTS: tuple[str, ...] = ("shallow", "deep")


@dataclass(frozen=True)
class InitConfig:
    """One init: `strategy`, p = `num_prompts`, `variant` (shallow: layer 0 only);
    `max_tokens` caps the k-means sample per layer (None: what the budget allows)."""

    strategy: str
    num_prompts: int
    variant: str = "deep"
    seed: int = 0
    max_tokens: int | None = None
    kmeans_max_iter: int = 100
    kmeans_tol: float = 1e-4

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"prompt_init: unknown strategy '{self.strategy}'; use {STRATEGIES}")
        if self.variant not in VARIANTS:
            raise ValueError(f"prompt_init: unknown variant '{self.variant}'; use {VARIANTS}")
        if self.num_prompts < 1:
            raise ValueError(f"prompt_init: num_prompts must be >= 1, got {self.num_prompts}")
        if self.max_tokens is not None and self.max_tokens < self.num_prompts:
            raise ValueError(
                f"prompt_init: max_tokens ({self.max_tokens}) must be >= num_prompts "
                f"({self.num_prompts}) for k-means"
            )

    def layers(self, depth: int) -> list[int]:
        """Layers whose prompts this init builds: [0] for shallow, 0..depth-1 for deep."""
        return [0] if self.variant == "shallow" else list(range(depth))

    def rows_per_layer(self, capacity: int) -> int:
        """Rows the reservoir of one layer holds: p, or the k-means sample size."""
        if self.strategy != "kmeans":
            return self.num_prompts
        return min(capacity, self.max_tokens) if self.max_tokens else capacity


def layer_seed(seed: int, layer: int, stream: int = 0) -> int:
    """An independent seed per (seed, layer, stream): no two draws share a random stream."""
    return int(np.random.SeedSequence([seed, layer, stream]).generate_state(1)[0])


def _generator(seed: int, layer: int) -> torch.Generator:
    return torch.Generator().manual_seed(layer_seed(seed, layer))


class InitCollector:
    """Streams tokens of the needed layers into per-layer reservoirs; `finalize` -> prompts."""

    def __init__(
        self,
        config: InitConfig,
        depth: int,
        dim: int,
        *,
        kmeans_capacity: int,
        device: torch.device | str = "cpu",
    ) -> None:
        self.config = config
        self.layers = config.layers(depth)
        rows = config.rows_per_layer(kmeans_capacity)
        self.reservoirs = {
            layer: Reservoir(rows, dim, generator=_generator(config.seed, layer), device=device)
            for layer in self.layers
        }
        self.seconds = dict.fromkeys(self.layers, 0.0)
        self.tokens_seen = dict.fromkeys(self.layers, 0)
        self.stats: dict[int, dict[str, Any]] = {}

    @property
    def nbytes(self) -> int:
        """Bytes held by every reservoir of this init right now."""
        return sum(r.nbytes for r in self.reservoirs.values())

    def update(self, layer: int, tokens: torch.Tensor) -> None:
        """Offer the (B, N, D) tokens entering `layer` (ignored for layers not needed)."""
        if layer not in self.reservoirs:
            return
        start = time.perf_counter()
        self.tokens_seen[layer] += tokens.shape[0] * tokens.shape[1]
        strategy = self.config.strategy
        if strategy in ("mean_pool", "max_pool"):
            tokens = pool_windows(tokens, self.config.num_prompts, strategy.removesuffix("_pool"))
        self.reservoirs[layer].add(tokens.reshape(-1, tokens.shape[-1]))
        self.seconds[layer] += time.perf_counter() - start

    def finalize(self) -> torch.Tensor:
        """(layers, p, D) prompts on the CPU; per-layer statistics land in `self.stats`."""
        p = self.config.num_prompts
        prompts = []
        for layer, reservoir in self.reservoirs.items():
            start = time.perf_counter()
            sample = reservoir.sample()
            if len(sample) < p:
                raise ValueError(
                    f"prompt_init ({self.config.strategy}): layer {layer} saw only "
                    f"{reservoir.seen} candidate tokens, fewer than num_prompts={p}; use more "
                    "images or fewer prompts"
                )
            stats: dict[str, Any] = {"candidates_seen": reservoir.seen, "rows_kept": len(sample)}
            if self.config.strategy == "kmeans":
                result = kmeans(
                    sample,
                    p,
                    seed=layer_seed(self.config.seed, layer, stream=1),
                    max_iter=self.config.kmeans_max_iter,
                    tol=self.config.kmeans_tol,
                )
                stats |= {k: getattr(result, k) for k in ("inertia", "iterations", "converged")}
                chosen = result.centers
            else:
                chosen = sample[:p]  # the sample is in random key order: any p are uniform
            prompts.append(chosen.float().cpu())
            self.seconds[layer] += time.perf_counter() - start
            self.stats[layer] = stats
        return torch.stack(prompts)
