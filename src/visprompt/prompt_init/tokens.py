"""The tokens entering each layer of a frozen, un-prompted timm ViT: layer 0 the patch
embeddings, layer l the output of block l-1 without prefix tokens. Computed through
`visprompt.methods.vit_tokens`, so the sequence is exactly the one VPT prompts join.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from functools import partial

import torch
from torch import nn

from visprompt.methods import vit_tokens as vt


def depth(vit: nn.Module) -> int:
    """Number of blocks, i.e. of prompt layers a deep VPT has."""
    return len(vit.blocks)


def layer_tokens(
    vit: nn.Module, images: torch.Tensor, last_layer: int, dtype: torch.dtype | None = None
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (layer, tokens (B, N, D)) for layers 0..last_layer, lazily (a caller times each
    layer before the next block runs), without gradients. Under `dtype` (e.g. bfloat16) the
    blocks run in autocast as in a bf16 run; tokens come back float32 either way."""
    vt.require_token_vit(vit, "prompt_init")
    if not 0 <= last_layer < depth(vit):
        raise ValueError(f"last_layer must be in [0, {depth(vit) - 1}], got {last_layer}")
    prefix = vt.num_prefix_tokens(vit)
    compute = nullcontext if dtype is None else partial(torch.autocast, images.device.type, dtype)

    with torch.no_grad():
        with compute():
            patches = vt.embed_patches(vit, images)
        yield 0, patches.float()
        if last_layer == 0:
            return
        with compute():
            tokens = vt.start_blocks(vit, vt.prefix_and_pos(vit, patches))
        for layer in range(1, last_layer + 1):
            with compute():
                tokens = vit.blocks[layer - 1](tokens)
            yield layer, tokens[:, prefix:].float()
