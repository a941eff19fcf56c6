"""Image sources for prompt_init: batches in order (the streamed pass) and random access by
index (a token sample runs only its images), over every image or a seeded `max_images` subset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from visprompt.data.shards import read_split


class IndexedImages:
    """Base of the sources: `load(indices)` -> a model-input batch; iteration in batches."""

    batch_size: int
    max_images: int | None
    seed: int

    def total_images(self) -> int:
        raise NotImplementedError

    def load(self, indices: np.ndarray) -> torch.Tensor:
        """The preprocessed float NCHW batch of these images (indices into the full set)."""
        raise NotImplementedError

    def indices(self) -> np.ndarray:
        """All image indices, or a seeded, sorted subset of `max_images` of them."""
        n = self.total_images()
        if self.max_images is None or self.max_images >= n:
            return np.arange(n)
        if self.max_images < 1:
            raise ValueError(f"prompt_init: max_images must be >= 1 or null, got {self.max_images}")
        chosen = np.random.default_rng(self.seed).choice(n, self.max_images, replace=False)
        return np.sort(chosen)

    @property
    def num_images(self) -> int:
        return len(self.indices())

    @property
    def num_batches(self) -> int:
        return -(-self.num_images // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        index = self.indices()
        for start in range(0, len(index), self.batch_size):
            yield self.load(index[start : start + self.batch_size])


@dataclass(frozen=True)
class ShardStream(IndexedImages):
    """One split of a shard directory; `preprocess` maps a uint8 NCHW batch on `device` to
    the model's input (e.g. `Preprocess.from_data_config(spec["data_config"])`)."""

    directory: str | Path
    split: str
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    batch_size: int = 128
    max_images: int | None = None
    seed: int = 0
    device: str = "cpu"

    def total_images(self) -> int:
        return len(read_split(self.directory, self.split)[1])

    def load(self, indices: np.ndarray) -> torch.Tensor:
        images = read_split(self.directory, self.split)[0]
        chunk = torch.from_numpy(np.asarray(images[np.asarray(indices)]))
        return self.preprocess(chunk.to(self.device).permute(0, 3, 1, 2))


@dataclass(frozen=True)
class TensorImages(IndexedImages):
    """Model-input images already in memory (float NCHW), e.g. in a notebook or a test."""

    images: torch.Tensor
    batch_size: int = 128
    max_images: int | None = None
    seed: int = 0

    def total_images(self) -> int:
        return len(self.images)

    def load(self, indices: np.ndarray) -> torch.Tensor:
        return self.images[torch.as_tensor(indices, dtype=torch.long)]
