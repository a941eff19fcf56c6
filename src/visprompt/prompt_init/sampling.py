"""Exact token sampling that runs only the images holding the drawn tokens.

A uniform draw of p (pooled) tokens needs only those p values: their (image, position)
indices are drawn first, without replacement, and the backbone runs on at most p images per
layer. Same distribution as the streamed reservoir, at a cost that does not grow with the
data; it needs a random-access source (`IndexedImages`).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from visprompt.prompt_init.collect import InitConfig, layer_seed
from visprompt.prompt_init.pooling import pool_windows, window_size
from visprompt.prompt_init.stream import IndexedImages
from visprompt.prompt_init.tokens import depth, layer_tokens


def candidates_per_image(num_tokens: int, config: InitConfig) -> int:
    """Tokens (random) or pooled tokens (mean/max pool) one image contributes."""
    if config.strategy == "random":
        return num_tokens
    return math.ceil(num_tokens / window_size(num_tokens, config.num_prompts))


def draw_positions(
    images: np.ndarray, per_image: int, config: InitConfig, layer: int
) -> tuple[np.ndarray, np.ndarray]:
    """(image index, position) of p candidates drawn uniformly without replacement."""
    total = len(images) * per_image
    if total < config.num_prompts:
        raise ValueError(
            f"prompt_init ({config.strategy}): layer {layer} has only {total} candidate tokens, "
            f"fewer than num_prompts={config.num_prompts}; use more images or fewer prompts"
        )
    rng = np.random.default_rng(layer_seed(config.seed, layer, stream=2))
    flat = rng.choice(total, size=config.num_prompts, replace=False)
    return images[flat // per_image], flat % per_image


def sample_prompts(
    backbone: nn.Module,
    source: IndexedImages,
    config: InitConfig,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, dict[int, float], int]:
    """(prompts (layers, p, D), seconds per layer, images run) for a sampling strategy;
    `dtype`: the forward's autocast dtype (`layer_tokens`)."""
    if config.strategy == "kmeans":
        raise ValueError("sample_prompts draws tokens; k-means needs the streamed pass")
    layers = config.layers(depth(backbone))
    num_tokens = int(backbone.patch_embed.num_patches)
    per_image = candidates_per_image(num_tokens, config)
    population = source.indices()
    picks = {layer: draw_positions(population, per_image, config, layer) for layer in layers}
    needed = np.unique(np.concatenate([img for img, _ in picks.values()]))
    prompts = torch.empty(len(layers), config.num_prompts, int(backbone.embed_dim))
    seconds = dict.fromkeys(layers, 0.0)
    mode = config.strategy.removesuffix("_pool")
    for start in range(0, len(needed), source.batch_size):
        chunk = needed[start : start + source.batch_size]
        clock = time.perf_counter()
        batch = source.load(chunk).to(device)
        for layer, tokens in layer_tokens(backbone, batch, max(layers), dtype):  # 0..last
            if config.strategy != "random":
                tokens = pool_windows(tokens, config.num_prompts, mode)
            image, position = picks[layer]
            hit = np.isin(image, chunk).nonzero()[0]
            local = torch.as_tensor(np.searchsorted(chunk, image[hit]), device=tokens.device)
            pos = torch.as_tensor(position[hit], device=tokens.device)
            prompts[layer, torch.as_tensor(hit)] = tokens[local, pos].float().cpu()
            now = time.perf_counter()
            seconds[layer] += now - clock
            clock = now
    return prompts, seconds, len(needed)
