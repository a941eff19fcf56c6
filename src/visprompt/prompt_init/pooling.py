"""Window pooling of each image's token sequence (SPT's cheap `mean_pool` / `max_pool`).

In raster order, the floor(N / w) full windows of w = floor(N / (p - 1)) tokens are pooled,
plus one window of the last N mod w tokens when there are any (the SPT reference code pools
the whole sequence when N mod w = 0, an artefact of slicing `x[-0:]` we do not copy). Each
image gives ceil(N / w) pooled tokens; p of them are drawn afterwards.

A shallow SPT init pools layer 0's tokens (the patch embeddings) this way too; the
reference's shallow code ignores the strategy and draws p random layer-0 tokens (the
`random` strategy here): a stated departure, see `visprompt.methods.vpt.model`.
"""

from __future__ import annotations

from typing import Literal

import torch

PoolMode = Literal["mean", "max"]


def window_size(num_tokens: int, num_prompts: int) -> int:
    """w = floor(N / (p - 1)), at least 1; N for a single prompt."""
    if num_tokens < 1 or num_prompts < 1:
        raise ValueError(
            f"need N >= 1 tokens and p >= 1 prompts; got N={num_tokens}, p={num_prompts}"
        )
    if num_prompts == 1:
        return num_tokens
    return max(1, num_tokens // (num_prompts - 1))


def pool_windows(tokens: torch.Tensor, num_prompts: int, mode: PoolMode) -> torch.Tensor:
    """(B, N, D) tokens -> (B, ceil(N / w), D) pooled tokens, windows in raster order."""
    if tokens.ndim != 3:
        raise ValueError(f"expected (B, N, D) tokens, got shape {tuple(tokens.shape)}")
    if mode not in ("mean", "max"):
        raise ValueError(f"pooling mode must be 'mean' or 'max', got '{mode}'")
    b, n, d = tokens.shape
    w = window_size(n, num_prompts)
    full, rest = divmod(n, w)
    windows = tokens[:, : full * w].reshape(b, full, w, d)
    pooled = windows.mean(2) if mode == "mean" else windows.amax(2)
    if rest:
        tail = tokens[:, full * w :]
        last = tail.mean(1, keepdim=True) if mode == "mean" else tail.amax(1, keepdim=True)
        pooled = torch.cat([pooled, last], dim=1)
    return pooled
