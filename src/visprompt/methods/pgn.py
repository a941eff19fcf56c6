"""PGN: prompt generation networks (Loedeman et al. 2022/2024).

A small ResNet maps each (normalised) image to L prompt tokens, each a softmax mixture over
a learned M×D token library. The tokens enter the frozen ViT *in place of* the patch
tokens of a reserved strip of patch positions: the last L positions in raster order (the
bottom patch rows; when L is not a multiple of the grid width, the right end of the row
above them). They get those positions' position embeddings, exactly as
image patches there would. This choice (the reference appends the tokens to the sequence
instead) keeps the model's input size fixed and makes `prompt_inversion` exact: an RGB
patch whose patch embedding equals a token, pasted at its strip position, gives the same
sequence, so the RGB path in front of an unmodified backbone computes the same function.

Trainable: the generator (its BatchNorm layers are *not* part of the frozen backbone: they
run in train mode during training and use their running statistics at evaluation), the
library and a new head. Parameters: generator (307,536 with the default widths) +
129·L·M (its final Linear) + M·D (library) + D·C + C (head).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.models.resnet import BasicBlock
from torch import nn

from visprompt.methods import vit_tokens
from visprompt.methods.base import AdaptedModel, register

DEFAULT_WIDTHS = (16, 32, 64, 128)


def _downsample(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
    )


class TokenGenerator(nn.Module):
    """Image -> L prompt tokens: small ResNet logits (L, M), softmax over M, mix the library.

    Stem: 3×3 conv stride 2 (widths[0] channels), BN, ReLU, 3×3 max-pool stride 2; one
    basic block per stage (stride 1 first, then 2); global average pool; Linear to L·M.
    """

    def __init__(
        self,
        num_prompts: int,
        library_size: int,
        embed_dim: int,
        widths: Sequence[int] = DEFAULT_WIDTHS,
    ) -> None:
        super().__init__()
        if num_prompts < 1 or library_size < 1 or not widths:
            raise ValueError(
                f"pgn needs num_prompts >= 1, library_size >= 1 and at least one width; got "
                f"{num_prompts}, {library_size}, {list(widths)}"
            )
        self.num_prompts, self.library_size = int(num_prompts), int(library_size)
        stem_width = int(widths[0])
        layers: list[nn.Module] = [
            nn.Conv2d(3, stem_width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        ]
        in_ch = stem_width
        for i, width in enumerate(int(w) for w in widths):
            stride = 1 if i == 0 else 2
            layers.append(BasicBlock(in_ch, width, stride, _downsample(in_ch, width, stride)))
            in_ch = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.logits = nn.Linear(in_ch, self.num_prompts * self.library_size)
        self.library = nn.Parameter(torch.randn(self.library_size, embed_dim) * 0.02)

    def mixture(self, images: torch.Tensor) -> torch.Tensor:
        """(B, L, M) softmax weights over the library for each prompt slot."""
        logits = self.logits(self.features(images))
        return logits.view(-1, self.num_prompts, self.library_size).softmax(dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, L, D) prompt tokens, convex combinations of the library rows."""
        return self.mixture(images) @ self.library


def strip_positions(grid_size: Sequence[int], num_prompts: int) -> torch.Tensor:
    """Raster indices of the reserved strip: the last `num_prompts` patch positions."""
    total = int(grid_size[0]) * int(grid_size[1])
    if not 1 <= num_prompts <= total:
        raise ValueError(
            f"pgn: num_prompts must be in [1, {total}] (the ViT has a {grid_size[0]}×"
            f"{grid_size[1]} patch grid and the prompts replace patches); got {num_prompts}"
        )
    return torch.arange(total - num_prompts, total)


def place_in_strip(patches: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Patch tokens (B, N, D) with the last L positions replaced by `tokens` (B, L, D)."""
    keep = patches.shape[1] - tokens.shape[1]
    return torch.cat([patches[:, :keep], tokens.to(patches.dtype)], dim=1)


@register("pgn")
class PromptGenerationNetwork(AdaptedModel):
    """Generated prompt tokens in a reserved strip of the frozen ViT's patch positions.

    Options: num_prompts (L, default 16), library_size (M, default 256), widths (the
    generator's four stage widths, default 16/32/64/128). ViT backbones only.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        num_prompts: int = 16,
        library_size: int = 256,
        widths: Sequence[int] = DEFAULT_WIDTHS,
    ) -> None:
        vit_tokens.require_token_vit(backbone, "pgn")
        widths = [int(w) for w in widths]
        super().__init__(
            backbone,
            num_classes,
            num_prompts=int(num_prompts),
            library_size=int(library_size),
            widths=widths,
        )
        self.positions = strip_positions(backbone.patch_embed.grid_size, int(num_prompts))
        self.generator = TokenGenerator(num_prompts, library_size, backbone.embed_dim, widths)
        self.head = self.new_head()

    def prompt_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, L, D) tokens for the strip, generated from the whole (un-prompted) image."""
        return self.generator(images)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features of the backbone with the strip's patches replaced by prompts."""
        vit = self.backbone
        patches = place_in_strip(vit_tokens.embed_patches(vit, images), self.prompt_tokens(images))
        tokens = vit_tokens.start_blocks(vit, vit_tokens.prefix_and_pos(vit, patches))
        tokens = vit_tokens.run_blocks(vit, tokens)
        return vit_tokens.head_from_tokens(vit, tokens, 0, include_prompts_in_pool=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))
