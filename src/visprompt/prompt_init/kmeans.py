"""Batched k-means in torch (k-means++ seeding, Lloyd iterations) on the tokens' device.

Not faiss: its `Kmeans` seeds uniformly rather than by k-means++ and runs on the CPU only.
Every draw comes from a CPU `torch.Generator`, so a seed gives the same centres anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

#: Distances are computed for this many points at a time (bounds the n x k matrix).
CHUNK = 65_536


@dataclass(frozen=True)
class KMeansResult:
    """Centres (k, D), their objective, and the k-means++ seeds Lloyd started from."""

    centers: torch.Tensor
    inertia: float
    iterations: int
    converged: bool
    seeds: torch.Tensor


def _chunk_distances(
    x: torch.Tensor, centers: torch.Tensor, x_sq: torch.Tensor | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(rows, their squared distances to every centre) per chunk: |x|^2 - 2 x.c + |c|^2."""
    if x_sq is None:
        x_sq = x.pow(2).sum(1, keepdim=True)
    c_sq = centers.pow(2).sum(1)
    for chunk, chunk_sq in zip(x.split(CHUNK), x_sq.split(CHUNK), strict=True):
        yield chunk, torch.addmm(chunk_sq, chunk, centers.T, alpha=-2.0).add_(c_sq)


def _lloyd_step(
    x: torch.Tensor, x_sq: torch.Tensor | None, centers: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(squared distance of each point to its nearest centre, per-centre sums, counts);
    sums are one-hot matrix products per chunk: BLAS work instead of a scatter."""
    k = centers.shape[0]
    sums = torch.zeros_like(centers)
    counts = torch.zeros(k, dtype=x.dtype, device=x.device)
    dists = []
    for chunk, d in _chunk_distances(x, centers, x_sq):
        best, arg = d.min(1)
        onehot = torch.nn.functional.one_hot(arg, k).to(x.dtype)
        sums.addmm_(onehot.T, chunk)
        counts += onehot.sum(0)
        dists.append(best.clamp_min_(0.0))
    return torch.cat(dists), sums, counts


def inertia(x: torch.Tensor, centers: torch.Tensor) -> float:
    """The k-means objective: sum of squared distances of the points to their nearest centre."""
    return float(_lloyd_step(x.float(), None, centers.float())[0].double().sum())


def _draw(weights: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` indices drawn with probability proportional to `weights` (inverse CDF)."""
    cdf = weights.double().cumsum(0)
    u = torch.rand(count, generator=generator, dtype=torch.float64).to(cdf.device) * cdf[-1]
    return torch.searchsorted(cdf, u).clamp_max_(len(cdf) - 1)


def kmeans_plus_plus(
    x: torch.Tensor, k: int, generator: torch.Generator, x_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, as scikit-learn): each seed is
    the best of 2 + ln k candidates drawn by squared distance to the nearest seed so far."""
    n = x.shape[0]
    if x_sq is None:
        x_sq = x.pow(2).sum(1, keepdim=True)
    trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=generator))
    centers = [x[first]]
    closest = (x - x[first]).pow(2).sum(1)
    for _ in range(1, k):
        if float(closest.sum()) <= 0.0:  # fewer distinct points than k: any point will do
            candidates = torch.randint(n, (trials,), generator=generator).to(x.device)
        else:
            candidates = _draw(closest, trials, generator)
        # (trials, n) potentials of each candidate added to the seeds, chosen by their sum.
        cand_d = torch.cat([d for _, d in _chunk_distances(x, x[candidates], x_sq)]).T
        potentials = torch.minimum(closest.unsqueeze(0), cand_d.clamp_min_(0.0))
        best = int(potentials.sum(1).argmin())
        centers.append(x[candidates[best]])
        closest = potentials[best]
    return torch.stack(centers)


def kmeans(
    x: torch.Tensor,
    k: int,
    *,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-4,
) -> KMeansResult:
    """Cluster the rows of `x` (n, D) into `k` centres.

    Lloyd stops when the objective improves by less than `tol` (relative) or after
    `max_iter` rounds; an empty cluster is re-seeded with the point farthest from its centre.
    """
    if x.ndim != 2:
        raise ValueError(f"k-means needs a (n, D) matrix, got shape {tuple(x.shape)}")
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k-means needs 1 <= k <= n points; got k={k}, n={x.shape[0]}")
    x = x.float()
    x_sq = x.pow(2).sum(1, keepdim=True)
    generator = torch.Generator().manual_seed(seed)
    seeds = kmeans_plus_plus(x, k, generator, x_sq)
    centers = seeds.clone()
    previous = float("inf")
    converged = False
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007  (read after the loop)
        dists, sums, counts = _lloyd_step(x, x_sq, centers)
        current = float(dists.double().sum())
        empty = (counts == 0).nonzero().flatten()
        centers = sums / counts.clamp_min(1).unsqueeze(1)
        if len(empty):
            centers[empty] = x[dists.topk(len(empty)).indices]
        if previous - current <= tol * max(current, 1e-12):
            converged = True
            break
        previous = current
    return KMeansResult(centers, inertia(x, centers), iterations, converged, seeds)
