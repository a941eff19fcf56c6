"""k-means: k-means++ seeds, Lloyd improves them, seeded determinism, clear errors."""

from __future__ import annotations

import pytest
import torch

from visprompt.prompt_init.kmeans import inertia, kmeans, kmeans_plus_plus


def blobs(n_per: int = 200, k: int = 5, dim: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 6
    return (centres.repeat_interleave(n_per, 0) + torch.randn(k * n_per, dim, generator=g)).float()


def test_objective_beats_its_seeds_and_random_tokens() -> None:
    x = blobs()
    result = kmeans(x, 5, seed=3)
    assert result.centers.shape == (5, 8)
    assert result.converged and result.iterations < 100
    assert result.inertia == pytest.approx(inertia(x, result.centers))
    assert result.inertia < inertia(x, result.seeds)
    g = torch.Generator().manual_seed(1)
    random_tokens = x[torch.randperm(len(x), generator=g)[:5]]
    assert result.inertia < inertia(x, random_tokens)
    # Well-separated blobs: about n·dim of unit noise in total, far below a wrong clustering.
    assert result.inertia < 1.2 * x.shape[0] * x.shape[1]


def test_seeds_are_data_points_and_spread() -> None:
    x = blobs()
    seeds = kmeans_plus_plus(x, 5, torch.Generator().manual_seed(0))
    assert all(bool((x == s).all(1).any()) for s in seeds)
    # D^2 seeding on separated blobs puts the seeds in 5 different blobs.
    blob_of_seed = {int((x == s).all(1).nonzero()[0]) // 200 for s in seeds}
    assert len(blob_of_seed) == 5


def test_deterministic_by_seed() -> None:
    x = torch.randn(500, 6, generator=torch.Generator().manual_seed(0))
    a, b, c = kmeans(x, 7, seed=1), kmeans(x, 7, seed=1), kmeans(x, 7, seed=2)
    assert torch.equal(a.centers, b.centers)
    assert not torch.equal(a.seeds, c.seeds)


def test_duplicate_points_and_k_equal_n() -> None:
    x = torch.ones(10, 3)
    result = kmeans(x, 4, seed=0)
    assert torch.allclose(result.centers, torch.ones(4, 3)) and result.inertia == 0.0
    y = torch.randn(6, 3)
    assert kmeans(y, 6, seed=0).inertia == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("k", [0, 11])
def test_bad_k_is_refused(k: int) -> None:
    with pytest.raises(ValueError, match="1 <= k <= n"):
        kmeans(torch.randn(10, 3), k)
