"""Normalised image batches straight from a shard split (memory-mapped uint8), optionally a
seeded subset of the images: the input stream of `build_prompt_inits`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from visprompt.data.shards import read_split


@dataclass(frozen=True)
class ShardStream:
    """Iterable of preprocessed batches of one split; `len` is the number of batches.

    `preprocess` maps a uint8 NCHW batch (on `device`) to the model's float input, e.g.
    `visprompt.training.Preprocess.from_data_config(spec["data_config"])`.
    """

    directory: str | Path
    split: str
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    batch_size: int = 128
    max_images: int | None = None
    seed: int = 0
    device: str = "cpu"

    def indices(self) -> np.ndarray:
        """All image indices, or a seeded, sorted subset of `max_images` of them."""
        n = len(read_split(self.directory, self.split)[1])
        if self.max_images is None or self.max_images >= n:
            return np.arange(n)
        if self.max_images < 1:
            raise ValueError(f"prompt_init: max_images must be >= 1 or null, got {self.max_images}")
        chosen = np.random.default_rng(self.seed).choice(n, self.max_images, replace=False)
        return np.sort(chosen)

    def __len__(self) -> int:
        return -(-len(self.indices()) // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        images, _ = read_split(self.directory, self.split)
        index = self.indices()
        for start in range(0, len(index), self.batch_size):
            chunk = np.asarray(images[index[start : start + self.batch_size]])
            yield self.preprocess(torch.from_numpy(chunk).to(self.device).permute(0, 3, 1, 2))
