"""Batched k-means in torch (k-means++ seeding, Lloyd iterations), on whatever device the
tokens live on.

Why not faiss: faiss's `Kmeans` seeds uniformly at random, not by k-means++, and runs on the
CPU only in the faiss-cpu build; a batched torch implementation does both and runs on a GPU.
Every random draw comes from a CPU `torch.Generator`, so a seed gives the same centres on
every device up to floating-point rounding.
"""

from __future__ import annotations

import math
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


def _nearest(x: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(squared distance to, index of) the nearest centre for every row of `x`, chunked."""
    c_sq = centers.pow(2).sum(1)
    dists, index = [], []
    for chunk in x.split(CHUNK):
        d = chunk.pow(2).sum(1, keepdim=True) - 2.0 * chunk @ centers.T + c_sq
        best, arg = d.min(1)
        dists.append(best.clamp_min_(0.0))
        index.append(arg)
    return torch.cat(dists), torch.cat(index)


def inertia(x: torch.Tensor, centers: torch.Tensor) -> float:
    """The k-means objective: sum of squared distances of the points to their nearest centre."""
    return float(_nearest(x.float(), centers.float())[0].double().sum())


def _draw(weights: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` indices drawn with probability proportional to `weights` (inverse CDF)."""
    cdf = weights.double().cumsum(0)
    u = torch.rand(count, generator=generator, dtype=torch.float64).to(cdf.device) * cdf[-1]
    return torch.searchsorted(cdf, u).clamp_max_(len(cdf) - 1)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; the variant scikit-learn uses).

    Each new seed is the best, by resulting objective, of 2 + ln k candidates drawn with
    probability proportional to the squared distance to the nearest seed so far.
    """
    n = x.shape[0]
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
        cand_d = torch.cdist(x[candidates], x).pow_(2)
        potentials = torch.minimum(closest.unsqueeze(0), cand_d)
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

    Lloyd iterations stop when the objective improves by less than `tol` (relative) or after
    `max_iter` rounds. An empty cluster is re-seeded with the point farthest from its centre,
    so the result always has `k` distinct-as-possible centres.
    """
    if x.ndim != 2:
        raise ValueError(f"k-means needs a (n, D) matrix, got shape {tuple(x.shape)}")
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k-means needs 1 <= k <= n points; got k={k}, n={x.shape[0]}")
    x = x.float()
    generator = torch.Generator().manual_seed(seed)
    seeds = kmeans_plus_plus(x, k, generator)
    centers = seeds.clone()
    previous = float("inf")
    converged = False
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007  (read after the loop)
        dists, assign = _nearest(x, centers)
        current = float(dists.double().sum())
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        empty = (counts == 0).nonzero().flatten()
        centers = sums / counts.clamp_min(1).unsqueeze(1).to(x.dtype)
        if len(empty):
            far = dists.topk(len(empty)).indices
            centers[empty] = x[far]
        if previous - current <= tol * max(current, 1e-12):
            converged = True
            break
        previous = current
    return KMeansResult(
        centers=centers,
        inertia=inertia(x, centers),
        iterations=iterations,
        converged=converged,
        seeds=seeds,
    )
