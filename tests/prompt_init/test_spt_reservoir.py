"""Reservoir: bounded memory, members of the stream, uniform inclusion."""

from __future__ import annotations

import torch

from visprompt.prompt_init.reservoir import Reservoir


def test_bounded_and_members_of_the_stream() -> None:
    res = Reservoir(50, 4, generator=torch.Generator().manual_seed(0))
    stream = torch.randn(1000, 4, generator=torch.Generator().manual_seed(1))
    for batch in stream.split(64):
        res.add(batch)
        assert len(res.values) <= 50
        assert res.nbytes <= 50 * Reservoir.bytes_per_row(4)
    sample = res.sample()
    assert sample.shape == (50, 4) and res.seen == 1000
    assert all(bool((stream == row).all(1).any()) for row in sample)
    assert len({tuple(r.tolist()) for r in sample}) == 50  # without replacement


def test_inclusion_is_uniform_over_the_stream() -> None:
    # 20 items in batches of 3, keep 5: each item is kept with probability 1/4.
    items = torch.arange(20, dtype=torch.float32).unsqueeze(1)
    counts = torch.zeros(20)
    g = torch.Generator().manual_seed(0)
    for _ in range(2000):
        res = Reservoir(5, 1, generator=g)
        for batch in items.split(3):
            res.add(batch)
        counts[res.sample()[:, 0].long()] += 1
    freq = counts / 2000
    assert float((freq - 0.25).abs().max()) < 0.05


def test_keeps_exactly_the_rows_with_the_smallest_keys() -> None:
    # Replay the key stream: the sample must be the `capacity` rows with the smallest keys.
    stream = torch.arange(500, dtype=torch.float32).unsqueeze(1)
    sizes = [7, 64, 1, 200, 3, 225]
    res = Reservoir(40, 1, generator=torch.Generator().manual_seed(5))
    for batch in stream.split(sizes):
        res.add(batch)
    replay = torch.Generator().manual_seed(5)
    keys = torch.cat([torch.rand(n, generator=replay) for n in sizes])
    expected = keys.argsort()[:40].float()
    assert torch.equal(res.sample()[:, 0], expected)  # same rows, in key order
