"""Window pooling on hand-made sequences whose pooled values are known."""

from __future__ import annotations

import pytest
import torch

from visprompt.prompt_init.pooling import pool_windows, window_size


def ramp(n: int) -> torch.Tensor:
    """One image, tokens 0..n-1, D=2: token i = (i, -i)."""
    t = torch.arange(n, dtype=torch.float32)
    return torch.stack([t, -t], dim=1).unsqueeze(0)


def test_window_size() -> None:
    assert window_size(10, 4) == 3  # floor(10 / 3)
    assert window_size(64, 20) == 3
    assert window_size(196, 20) == 10
    assert window_size(5, 1) == 5  # one prompt: the whole sequence
    assert window_size(4, 10) == 1  # more prompts than tokens: every token its own window


def test_mean_and_max_with_a_remainder_window() -> None:
    # N=10, p=4: w=3, windows [0,1,2] [3,4,5] [6,7,8] and the last N mod w = 1 token [9].
    mean = pool_windows(ramp(10), 4, "mean")
    assert mean[0, :, 0].tolist() == [1.0, 4.0, 7.0, 9.0]
    assert mean[0, :, 1].tolist() == [-1.0, -4.0, -7.0, -9.0]
    peak = pool_windows(ramp(10), 4, "max")
    assert peak[0, :, 0].tolist() == [2.0, 5.0, 8.0, 9.0]
    assert peak[0, :, 1].tolist() == [0.0, -3.0, -6.0, -9.0]


def test_no_extra_window_when_the_windows_divide_the_sequence() -> None:
    # N=9, p=4: w=3, N mod w = 0 -> exactly three windows, no whole-sequence window.
    pooled = pool_windows(ramp(9), 4, "mean")
    assert pooled[0, :, 0].tolist() == [1.0, 4.0, 7.0]


def test_more_full_windows_than_p_minus_one() -> None:
    # N=64, p=20: w=3, 21 full windows plus one of the last token.
    pooled = pool_windows(ramp(64), 20, "max")
    assert pooled.shape == (1, 22, 2)
    assert pooled[0, -2, 0] == 62.0 and pooled[0, -1, 0] == 63.0


def test_batched_images_are_pooled_independently() -> None:
    x = torch.cat([ramp(10), ramp(10) + 100])
    pooled = pool_windows(x, 4, "mean")
    assert torch.equal(pooled[1], pooled[0] + 100)


def test_bad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mean' or 'max"):
        pool_windows(ramp(4), 2, "median")  # type: ignore[arg-type]
