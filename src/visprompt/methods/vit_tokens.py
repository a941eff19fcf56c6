"""Token-sequence access to a timm VisionTransformer, reusing the backbone's own modules.

Token methods (VPT, PGN) and SPT token collection need the steps of timm's
`forward_features` / `forward_head` one by one, so that extra tokens can enter between
them. These helpers call the backbone's own `patch_embed`, `_pos_embed`, `norm_pre`,
`blocks`, `norm`, `pool`, `fc_norm` and `head`, so pre-norm (CLIP-style), register-token,
average-pool and attention-pool ViTs keep exactly their structure.

Sequence layout used throughout: `[prefix tokens (CLS, registers), extra tokens, patches]`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

#: Called before block `i` with the tokens entering it; returns the tokens to use.
BlockHook = Callable[[int, torch.Tensor], torch.Tensor]


def require_token_vit(vit: nn.Module, method: str) -> None:
    """Refuse backbones whose token path these helpers cannot reproduce exactly."""
    if not isinstance(vit, VisionTransformer):
        raise ValueError(
            f"method '{method}' needs a timm VisionTransformer (CLS/register prefix tokens, "
            f"absolute position embeddings); got {type(vit).__name__}."
        )
    if getattr(vit, "dynamic_img_size", False):
        raise ValueError(
            f"method '{method}' does not support dynamic_img_size=True ViTs: build the "
            "backbone with a fixed img_size."
        )


def num_prefix_tokens(vit: nn.Module) -> int:
    """CLS + register (+ distillation) tokens in front of the patch tokens."""
    return int(vit.num_prefix_tokens)


def embed_patches(vit: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Patch embeddings (B, N, D): no prefix tokens, no position embedding."""
    return vit.patch_embed(images)


def prefix_and_pos(vit: nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """timm's `_pos_embed` (+ `patch_drop`): [prefix, patches] with position embeddings.

    `norm_pre` is not applied here, so extra tokens can join the sequence before it
    (as CLIP-style prompt methods do); see `start_blocks`.
    """
    return vit.patch_drop(vit._pos_embed(patches))


def insert_tokens(tokens: torch.Tensor, extra: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """[prefix, extra, rest]: `extra` (B, p, D) enters right after the prefix tokens."""
    return torch.cat([tokens[:, :num_prefix], extra, tokens[:, num_prefix:]], dim=1)


def replace_tokens(tokens: torch.Tensor, extra: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """Swap the p tokens after the prefix for `extra` (B, p, D); the length is unchanged."""
    p = extra.shape[1]
    return torch.cat([tokens[:, :num_prefix], extra, tokens[:, num_prefix + p :]], dim=1)


def start_blocks(vit: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The backbone's `norm_pre` (identity unless the ViT is pre-normed), before block 0."""
    return vit.norm_pre(tokens)


def run_blocks(vit: nn.Module, tokens: torch.Tensor, hook: BlockHook | None = None) -> torch.Tensor:
    """Run every block; `hook(i, tokens)` may replace (or record) block i's input."""
    for i, block in enumerate(vit.blocks):
        if hook is not None:
            tokens = hook(i, tokens)
        tokens = block(tokens)
    return tokens


def head_from_tokens(
    vit: nn.Module,
    tokens: torch.Tensor,
    num_prompts: int,
    include_prompts_in_pool: bool,
    *,
    pre_logits: bool = True,
) -> torch.Tensor:
    """Final norm, pool, fc_norm of the block outputs; the source head when not `pre_logits`.

    The `num_prompts` tokens after the prefix are removed before pooling unless
    `include_prompts_in_pool`. CLS pooling reads index 0 either way; average (or attention)
    pooling sees the prompts only when they are included.
    """
    tokens = vit.norm(tokens)
    if num_prompts and not include_prompts_in_pool:
        prefix = num_prefix_tokens(vit)
        tokens = torch.cat([tokens[:, :prefix], tokens[:, prefix + num_prompts :]], dim=1)
    return vit.forward_head(tokens, pre_logits=pre_logits)
