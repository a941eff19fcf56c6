"""PGN: prompt generation networks (Loedeman et al. 2022/2024).

A small ResNet maps each (normalised) image to L prompt tokens, each a softmax mixture over
a learned M×D token library. Placement (option `placement`):

- `below` (default, as in the paper): the ViT sees the image's whole patch grid plus
  k = ceil(L / grid width) extra patch rows under it; the L tokens fill the first L positions
  of those rows (raster order), the rest hold the embedding of a blank patch (0 in
  normalised space: the mean colour). Position embeddings for the taller grid are the ones
  the unmodified timm model computes for an input k·P pixels taller (`resample_abs_pos_embed`,
  as timm's dynamic image size / `set_input_size` does), in training and in deployment alike.
- `replace`: the tokens overwrite the last L patch positions of the image (bottom rows):
  the input size stays fixed but image content there is lost. Explicit opt-in only.

Either way prompt inversion (`inversion`) is exact: an RGB patch whose embedding equals a
token, pasted at its position (under the image for `below`), gives the same sequence to an
unmodified backbone.

Trainable: the generator (its BatchNorm layers are *not* part of the frozen backbone: they
run in train mode during training and use their running statistics at evaluation), the
library and a new head. The generator's stage widths are w, 2w, 4w, 8w; the reference uses
w = 16 with ViT-B/16, a trunk of 0.36 % of the backbone's parameters. `width` defaults to
the largest w whose trunk keeps that share of the given backbone (`default_width`), so the
generator scales with the backbone (ViT-B/16: 16; the embedded 0.47 M-parameter ViT: 1).
Parameters: generator(w) (307,536 at w = 16, `generator_parameters`) + (8w + 1)·L·M (its
final Linear) + M·D (library) + D·C + C (head).

Against the reference code (jochemloedeman/PGN, `pgn_models/resnet.py`, `tlpgn.py`,
`lightning/pgn_vit.py`):

- Generator init: as the reference, every convolution Kaiming-normal with fan-out (ReLU
  gain), every BatchNorm weight 1 and bias 0 (`TokenGenerator.reset_parameters`); the final
  Linear and the library (normal, std 0.02) as the reference too.
- Input resolution (departure): the reference resizes the image to 224 px before the
  generator; here the generator sees the image at the ViT's own input size (224 for
  ViT-B/16, where the two agree; 32 px for the embedded ViT). Upsampling 32 px digits to
  224 adds no information and ~49x the generator's cost on CPU.
- Shortcut (departure): where a stage changes shape, the shortcut is a 1×1 convolution
  without bias followed by BatchNorm (timm's/torchvision's ResNet), where the reference has
  a bare 1×1 convolution with a bias. The BN keeps the shortcut on the scale of the
  residual branch (which ends in a BN) at any init; `generator_parameters` counts it.
- Prompt placement (departure): the reference appends the L tokens after the patch tokens,
  after the position embeddings were added, so they carry none. Here they sit at patch
  positions of extra rows under the image, with those positions' embeddings: that is what
  makes the RGB deployment exact (a client pastes patches whose embedding equals the
  tokens, and an unmodified ViT adds the same position embeddings), the project's way of
  serving PGN behind an unchanged backbone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from timm.models.resnet import BasicBlock
from torch import nn

from visprompt.methods import vit_tokens
from visprompt.methods.base import AdaptedModel, SharedForm, register
from visprompt.methods.pgn import inversion
from visprompt.methods.pgn.config import PGNConfig

REFERENCE_WIDTH = 16  # the paper's generator trunk (16/32/64/128 channels) ...
REFERENCE_BACKBONE = 86_567_656  # ... with ViT-B/16 (timm, 1000-class head)
log = logging.getLogger(__name__)


def stage_widths(width: int) -> tuple[int, int, int, int]:
    """The generator's four stage widths for base width `width` (reference: 16/32/64/128)."""
    return (width, 2 * width, 4 * width, 8 * width)


def generator_parameters(width: int) -> int:
    """Parameters of the generator's convolutional trunk (before its final Linear).

    Stem 3×3 conv + BN (29·w); per stage i with input c and output o: two 3×3 convs + two
    BNs (9·c·o + 9·o² + 4·o), plus a 1×1 conv + BN shortcut (c·o + 2·o) when the shape changes.
    """
    widths = stage_widths(width)
    total, in_ch = 29 * widths[0], widths[0]
    for i, out in enumerate(widths):
        total += 9 * in_ch * out + 9 * out * out + 4 * out
        if i > 0 or in_ch != out:
            total += in_ch * out + 2 * out
        in_ch = out
    return total


def default_width(backbone_parameters: int) -> int:
    """The largest base width (at least 1) whose trunk is at most the reference's share of
    the backbone: generator_parameters(w) <= 307,536 / 86,567,656 × backbone_parameters."""
    budget = generator_parameters(REFERENCE_WIDTH) * backbone_parameters / REFERENCE_BACKBONE
    width = 1
    while generator_parameters(width + 1) <= budget:
        width += 1
    return width


def _downsample(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
    )


class TokenGenerator(nn.Module):
    """Image -> L prompt tokens: small ResNet logits (L, M), softmax over M, mix the library.

    Stem: 3×3 conv stride 2 (`width` channels), BN, ReLU, 3×3 max-pool stride 2; one
    basic block per stage (stride 1 first, then 2); global average pool; Linear to L·M.
    """

    def __init__(
        self,
        num_prompts: int,
        library_size: int,
        embed_dim: int,
        width: int = REFERENCE_WIDTH,
    ) -> None:
        super().__init__()
        widths = stage_widths(int(width))
        self.num_prompts, self.library_size = int(num_prompts), int(library_size)
        stem_width = int(widths[0])
        layers: list[nn.Module] = [
            nn.Conv2d(3, stem_width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        ]
        in_ch = stem_width
        for i, out_ch in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(BasicBlock(in_ch, out_ch, stride, _downsample(in_ch, out_ch, stride)))
            in_ch = out_ch
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.logits = nn.Linear(in_ch, self.num_prompts * self.library_size)
        self.library = nn.Parameter(torch.randn(self.library_size, embed_dim) * 0.02)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference's init: convolutions Kaiming-normal (fan-out, ReLU gain), BatchNorm
        weight 1 and bias 0. PyTorch's default conv init is ~0.4-0.9x that scale at these
        widths, which starves a narrow trunk's activations."""
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def mixture(self, images: torch.Tensor) -> torch.Tensor:
        """(B, L, M) softmax weights over the library for each prompt slot."""
        logits = self.logits(self.features(images))
        return logits.view(-1, self.num_prompts, self.library_size).softmax(dim=-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, L, D) prompt tokens, convex combinations of the library rows."""
        return self.mixture(images) @ self.library


@dataclass(frozen=True)
class PromptLayout:
    """Where PGN's L prompt patches sit in the ViT's input patch grid.

    `image_grid` is the backbone's (rows, cols) patch grid of the image; `below` adds
    `extra_rows` rows under it, `replace` reuses the image's last L positions.
    """

    image_grid: tuple[int, int]
    num_prompts: int
    placement: str = "below"

    def __post_init__(self) -> None:
        rows, cols = self.image_grid
        if self.placement == "replace" and self.num_prompts > rows * cols:
            raise ValueError(
                f"pgn: num_prompts must be in [1, {rows * cols}] (the ViT has a {rows}×{cols} "
                f"patch grid and placement 'replace' overwrites image patches); got "
                f"{self.num_prompts}"
            )

    @property
    def extra_rows(self) -> int:
        """k = ceil(L / grid width) patch rows under the image (0 for `replace`)."""
        if self.placement == "replace":
            return 0
        return math.ceil(self.num_prompts / self.image_grid[1])

    @property
    def input_grid(self) -> tuple[int, int]:
        """(rows, cols) of the patch grid the ViT sees."""
        return (self.image_grid[0] + self.extra_rows, self.image_grid[1])

    @property
    def positions(self) -> list[int]:
        """Raster indices of the prompt patches in `input_grid`."""
        rows, cols = self.image_grid
        first = rows * cols if self.placement == "below" else rows * cols - self.num_prompts
        return list(range(first, first + self.num_prompts))


def blank_patch_token(vit: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(1, 1, D) patch embedding of a blank patch (0 in normalised space): the fill under
    the image where no prompt sits, the same token an all-zero RGB patch gives the model."""
    return vit_tokens.embed_patches(vit, images.new_zeros((1, *images.shape[1:])))[:, :1]


@register(PGNConfig)
class PromptGenerationNetwork(AdaptedModel):
    """Generated prompt tokens as extra patch rows under the image (or, opt-in, over it);
    ViT backbones only. Served as prompt inversion (`rgb`); adds its RGB-path test figures."""

    def __init__(self, backbone: nn.Module, num_classes: int, config: PGNConfig) -> None:
        vit_tokens.require_token_vit(backbone, "pgn")
        width = config.width or default_width(sum(p.numel() for p in backbone.parameters()))
        grid = tuple(int(g) for g in backbone.patch_embed.grid_size)
        layout = PromptLayout(grid, config.num_prompts, config.placement)
        super().__init__(backbone, num_classes, config.model_copy(update={"width": width}))
        self.layout = layout
        self.generator = TokenGenerator(
            config.num_prompts, config.library_size, backbone.embed_dim, width
        )
        self.head = self.new_head()

    def served(
        self, rgb: bool = False, normalisation: Mapping[str, Any] | None = None
    ) -> nn.Module:
        """With `rgb`, prompt inversion in front of the unmodified ViT; else the token path."""
        return inversion.RGBDeployment(self, normalisation) if rgb else self.eval()

    def shared_form(
        self, rgb: bool = False, normalisation: Mapping[str, Any] | None = None
    ) -> SharedForm | None:
        """With `rgb`, the client's prompted (taller) picture per sample into the plain
        backbone; the token path is served on its own."""
        if not rgb:
            return None
        client = inversion.PromptClient.from_pgn(self, normalisation)
        return SharedForm(head=self.head, inputs=client.normalised)

    def extra_test_metrics(
        self, dataset: Any, data_config: Mapping[str, Any], batch_size: int, progress: bool
    ) -> dict[str, float]:
        """The RGB path's figures (rgb_agreement, rgb_agreement_uint8, ...), in fp32 on the
        model's device: how exactly a client inverts the prompt into pixels. A ViT whose
        patches cannot be inverted gives none, with a warning."""
        try:
            return inversion.deployment_metrics(self, dataset, data_config, batch_size, progress)
        except ValueError as error:
            log.warning("pgn: no RGB deployment figures for this backbone: %s", error)
            return {}

    def prompt_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, L, D) prompt tokens, generated from the whole (un-prompted) image."""
        return self.generator(images)

    def patch_sequence(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B, rows·cols, D) patch tokens of the input grid, `tokens` at the layout's positions."""
        patches = vit_tokens.embed_patches(self.backbone, images)
        tokens = tokens.to(patches.dtype)
        if self.layout.placement == "replace":
            return torch.cat([patches[:, : -tokens.shape[1]], tokens], dim=1)
        cols = self.layout.image_grid[1]
        fill = self.layout.extra_rows * cols - tokens.shape[1]
        blank = blank_patch_token(self.backbone, images).expand(len(images), fill, -1)
        return torch.cat([patches, tokens, blank], dim=1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features of the backbone on the prompted patch grid."""
        vit = self.backbone
        patches = self.patch_sequence(images, self.prompt_tokens(images))
        tokens = vit_tokens.prefix_and_pos(vit, patches, grid=self.layout.input_grid)
        tokens = vit_tokens.run_blocks(vit, vit_tokens.start_blocks(vit, tokens))
        return vit_tokens.head_from_tokens(vit, tokens, 0, include_prompts_in_pool=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))
