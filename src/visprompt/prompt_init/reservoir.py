"""Uniform sampling without replacement from a stream of token batches, in fixed memory.

Each incoming token gets a uniform random key; the reservoir keeps the `capacity` tokens with
the smallest keys seen so far. That is exactly a uniform sample of all tokens streamed
(any `capacity`-subset is equally likely), it is vectorised per batch, and the memory held is
`capacity` tokens plus their keys, however long the stream.
"""

from __future__ import annotations

import torch


class Reservoir:
    """Keeps a uniform sample of at most `capacity` rows of width `dim`."""

    KEY_DTYPE = torch.float32

    def __init__(
        self,
        capacity: int,
        dim: int,
        *,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"reservoir capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.dim = int(dim)
        self.generator = generator
        self.device = torch.device(device)
        self.dtype = dtype
        self.values = torch.empty(0, dim, device=self.device, dtype=dtype)
        self.keys = torch.empty(0, device=self.device, dtype=self.KEY_DTYPE)
        self.seen = 0

    @staticmethod
    def bytes_per_row(dim: int, dtype: torch.dtype = torch.float32) -> int:
        """Bytes one kept row costs (value plus key): the unit of the memory budget."""
        value = torch.empty(0, dtype=dtype).element_size() * dim
        return value + torch.empty(0, dtype=Reservoir.KEY_DTYPE).element_size()

    @property
    def nbytes(self) -> int:
        """Bytes held by the sample right now (tensor storage)."""
        return self.values.numel() * self.values.element_size() + self.keys.numel() * 4

    def add(self, rows: torch.Tensor) -> None:
        """Offer a batch of rows (n, dim); keeps the sample uniform over everything offered."""
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"expected rows of shape (n, {self.dim}), got {tuple(rows.shape)}")
        n = rows.shape[0]
        if n == 0:
            return
        self.seen += n
        keys = torch.rand(n, generator=self.generator, dtype=self.KEY_DTYPE).to(self.device)
        if len(self.keys) == self.capacity:
            # Only rows that beat the current worst key can enter: usually few, late on.
            enter = keys < self.keys.max()
            if not bool(enter.any()):
                return
            keys, rows = keys[enter], rows[enter]
        keys = torch.cat([self.keys, keys])
        values = torch.cat([self.values, rows.to(self.device, self.dtype)])
        if len(keys) > self.capacity:
            keep = keys.topk(self.capacity, largest=False, sorted=False).indices
            keys, values = keys[keep], values[keep]
        self.keys, self.values = keys, values

    def sample(self) -> torch.Tensor:
        """The kept rows in key order (a uniformly random order), shape (min(seen, cap), dim)."""
        return self.values[self.keys.argsort()]
