"""Uniform sampling without replacement from a stream of token batches, in fixed memory.

Each token gets a uniform random key and the `capacity` smallest keys are kept: exactly a
uniform sample of everything streamed, vectorised per batch. Storage grows by doubling up to
`capacity`; once full, a batch only touches the slots it displaces (no copy of kept tokens).
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
        self._values = torch.empty(0, dim, device=self.device, dtype=dtype)
        self._keys = torch.empty(0, device=self.device, dtype=self.KEY_DTYPE)
        self.size = 0
        self.seen = 0

    @staticmethod
    def bytes_per_row(dim: int, dtype: torch.dtype = torch.float32) -> int:
        """Bytes one kept row costs (value plus key): the unit of the memory budget."""
        return dtype.itemsize * dim + Reservoir.KEY_DTYPE.itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of storage allocated right now (never more than capacity rows)."""
        return self._values.nbytes + self._keys.nbytes

    @property
    def values(self) -> torch.Tensor:
        """The kept rows, in storage order."""
        return self._values[: self.size]

    def _grow(self, rows: int) -> None:
        """Make room for `rows` kept rows: doubling, capped at capacity (amortised O(1))."""
        if rows <= len(self._keys):
            return
        size = min(self.capacity, max(rows, 2 * len(self._keys)))
        values = torch.empty(size, self.dim, device=self.device, dtype=self.dtype)
        keys = torch.empty(size, device=self.device, dtype=self.KEY_DTYPE)
        values[: self.size] = self._values[: self.size]
        keys[: self.size] = self._keys[: self.size]
        self._values, self._keys = values, keys

    def add(self, rows: torch.Tensor) -> None:
        """Offer a batch of rows (n, dim); keeps the sample uniform over everything offered."""
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"expected rows of shape (n, {self.dim}), got {tuple(rows.shape)}")
        n = rows.shape[0]
        if n == 0:
            return
        self.seen += n
        keys = torch.rand(n, generator=self.generator, dtype=self.KEY_DTYPE).to(self.device)
        rows = rows.to(self.device, self.dtype)
        take = min(self.capacity - self.size, n)
        if take > 0:  # still filling: keep everything
            self._grow(self.size + take)
            self._values[self.size : self.size + take] = rows[:take]
            self._keys[self.size : self.size + take] = keys[:take]
            self.size += take
            rows, keys = rows[take:], keys[take:]
        if len(keys) == 0:
            return
        enter = keys < self._keys.max()  # only rows beating the worst kept key can enter
        keys, rows = keys[enter], rows[enter]
        if len(keys) > self.capacity:  # a batch larger than the sample: its best suffice
            best = keys.topk(self.capacity, largest=False).indices
            keys, rows = keys[best], rows[best]
        m = len(keys)
        if m == 0:
            return
        worst = self._keys.topk(m)  # the m largest kept keys and their slots
        pool_keys = torch.cat([worst.values, keys])
        keep = pool_keys.topk(m, largest=False).indices  # the m smallest of those 2m
        self._values[worst.indices] = torch.cat([self._values[worst.indices], rows])[keep]
        self._keys[worst.indices] = pool_keys[keep]

    def sample(self) -> torch.Tensor:
        """The kept rows in key order (a uniformly random order), shape (size, dim)."""
        return self._values[: self.size][self._keys[: self.size].argsort()]
