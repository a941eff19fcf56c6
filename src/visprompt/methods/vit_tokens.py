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
from timm.layers import resample_abs_pos_embed
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


def grid_pos_embed(vit: nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """The position embeddings timm gives a `grid` (rows, cols) of patches.

    For another grid than the one the ViT was built for, this is timm's own resampling
    (`resample_abs_pos_embed`, the call of its dynamic image size and of `set_input_size`),
    so a model switched to that input size by timm computes the same embeddings.
    """
    built_for = tuple(int(g) for g in vit.patch_embed.grid_size)
    if tuple(grid) == built_for:
        return vit.pos_embed
    return resample_abs_pos_embed(
        vit.pos_embed,
        new_size=list(grid),
        old_size=list(built_for),
        num_prefix_tokens=0 if vit.no_embed_class else vit.num_prefix_tokens,
    )


def prefix_and_pos(
    vit: nn.Module, patches: torch.Tensor, grid: tuple[int, int] | None = None
) -> torch.Tensor:
    """timm's `_pos_embed` (+ `patch_drop`): [prefix, patches] with position embeddings.

    `grid` (rows, cols) of `patches` when it differs from the ViT's own: position
    embeddings then come from `grid_pos_embed`, combined with the prefix tokens as timm's
    `_pos_embed` does. `norm_pre` is not applied here, so extra tokens can join the sequence
    before it (as CLIP-style prompt methods do); see `start_blocks`.
    """
    if grid is None or tuple(grid) == tuple(vit.patch_embed.grid_size):
        return vit.patch_drop(vit._pos_embed(patches))
    prefix = [
        t.expand(len(patches), -1, -1) for t in (vit.cls_token, vit.reg_token) if t is not None
    ]
    if vit.pos_embed is None:
        return vit.patch_drop(torch.cat([*prefix, patches], dim=1))
    pos_embed = grid_pos_embed(vit, grid)
    if vit.no_embed_class:
        tokens = torch.cat([*prefix, patches + pos_embed], dim=1)
    else:
        tokens = torch.cat([*prefix, patches], dim=1) + pos_embed
    return vit.patch_drop(vit.pos_drop(tokens))


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
