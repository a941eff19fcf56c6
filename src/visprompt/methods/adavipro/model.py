"""AdaViPro: a pad prompt applied only where a learned, input-dependent region mask says so.

(Yang et al. 2024.) Prompted input = x + P ⊙ M(x), with P VP's pad template
(`vp.PadPrompt`) and M(x) a binary region mask:
- edge map: the fixed 4-neighbour Laplacian [[0,1,0],[1,-4,1],[0,1,0]] (zero padding 1) of
  the *normalised* image the backbone receives. Choice (open in the paper), option
  `edge_channels`: `gray` (default; the channel mean, one edge channel — this matches
  the reference's ≈0.13 M parameters at 224 px) or `rgb` (per channel, three edge channels).
  Normalisation only rescales a linear edge map per channel, which the learned conv absorbs,
  so taking it after normalisation needs no knowledge of mean/std.
- mask generator: Conv2d(edge channels, embed_dim, kernel = stride = region_size), ReLU
  (our choice: without it the two convs would collapse into one linear map), 1×1 conv to
  2 logits {discard, apply} per region;
- training: hard Gumbel-Softmax with straight-through gradients at temperature
  τ = tau0 · tau_decay^epoch (set by `on_epoch_start`, kept in `extra_state` so that it
  survives checkpoint/resume and save/load); evaluation: argmax, no noise;
- the (S/r)×(S/r) region mask is upsampled (nearest) to S×S.
Trainable: P, the two convs and a new head. Parameters:
12·p·(S−p) + c·r²·E + E + 2·E + 2 + D·C + C (c = 1 for `gray`, 3 for `rgb`).
`param_groups` gives the mask generator its own learning rate: lr · generator_lr_scale
(the reference used 40 for P and 1 for the generator, i.e. a scale of 1/40; our default 1.0
leaves it to the run's configuration); template and head use lr.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from visprompt import backbones
from visprompt.backbones import pooled_features
from visprompt.methods.adavipro.config import AdaViProConfig
from visprompt.methods.base import AdaptedModel, SharedForm, register
from visprompt.methods.vp.model import PadPrompt, default_prompt_size

LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def default_region_size(size: int) -> int:
    """The reference region 32 at 224 px, scaled to `size`, rounded to a divisor of `size`."""
    target = 32 * size / 224
    divisors = [d for d in range(1, size + 1) if size % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), d))


def edge_map(images: torch.Tensor, channels: str = "gray") -> torch.Tensor:
    """Fixed Laplacian edges of (B, 3, H, W) images: (B, 1, H, W) `gray` or (B, 3, H, W) `rgb`."""
    x = images.mean(dim=1, keepdim=True) if channels == "gray" else images
    kernel = torch.tensor(LAPLACIAN, dtype=x.dtype, device=x.device).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(x, kernel, padding=1, groups=x.shape[1])


class MaskGenerator(nn.Module):
    """Edge map -> (B, 2, S/r, S/r) logits {discard, apply} per region."""

    def __init__(self, in_channels: int, region_size: int, embed_dim: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(in_channels, embed_dim, region_size, stride=region_size)
        self.act = nn.ReLU(inplace=True)
        self.logits = nn.Conv2d(embed_dim, 2, 1)

    def forward(self, edges: torch.Tensor) -> torch.Tensor:
        return self.logits(self.act(self.embed(edges)))


def region_mask(logits: torch.Tensor, temperature: float, training: bool) -> torch.Tensor:
    """(B, 1, R, R) binary mask: hard Gumbel-Softmax (straight-through) or argmax at eval."""
    if training:
        return F.gumbel_softmax(logits, tau=temperature, hard=True, dim=1)[:, 1:2]
    return (logits.argmax(dim=1, keepdim=True) == 1).to(logits.dtype)


@register(AdaViProConfig)
class AdaViPro(AdaptedModel):
    """x + P ⊙ mask(edges(x)) into the frozen backbone, then a new head (see module doc)."""

    method_config: AdaViProConfig

    def __init__(self, backbone: nn.Module, num_classes: int, config: AdaViProConfig) -> None:
        size = int(config.image_size or backbones.image_size(backbone))
        p = int(config.prompt_size or default_prompt_size(size))
        r = int(config.region_size or default_region_size(size))
        if size % r:
            raise ValueError(
                f"adavipro: region_size must divide image_size {size}; got {r} "
                f"(e.g. {default_region_size(size)})"
            )
        resolved = {"prompt_size": p, "image_size": size, "region_size": r}
        super().__init__(backbone, num_classes, config.model_copy(update=resolved))
        self.image_size, self.edge_channels = size, config.edge_channels
        self.prompt = PadPrompt(size, p)
        in_channels = 1 if config.edge_channels == "gray" else 3
        self.mask_generator = MaskGenerator(in_channels, r, config.embed_dim)
        self.head = self.new_head()
        self.epoch = 0

    # -- temperature schedule ---------------------------------------------------------------
    @property
    def temperature(self) -> float:
        return self.method_config.tau0 * self.method_config.tau_decay**self.epoch

    def on_epoch_start(self, epoch: int, loader: Any | None = None) -> None:
        """τ = tau0 · tau_decay^epoch for the coming epoch (epochs count from 0)."""
        self.epoch = int(epoch)

    def extra_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "temperature": self.temperature}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.epoch = int(state.get("epoch", 0))

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Template and head at `lr`; the mask generator at `lr · generator_lr_scale`."""
        generator = list(self.mask_generator.parameters())
        ids = {id(q) for q in generator}
        rest = [q for q in self.trainable_parameters() if id(q) not in ids]
        scale = self.method_config.generator_lr_scale
        return [
            {"params": rest, "lr": lr, "weight_decay": weight_decay},
            {"params": generator, "lr": lr * scale, "weight_decay": weight_decay},
        ]

    # -- the prompted input ---------------------------------------------------------------------
    def edges(self, images: torch.Tensor) -> torch.Tensor:
        """The fixed edge map the mask generator sees."""
        return edge_map(images, self.edge_channels)

    def mask(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) binary mask: 1 where the prompt is applied."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"adavipro: images are {tuple(images.shape[-2:])} but the prompt is "
                f"{self.image_size}×{self.image_size}; resize inputs to image_size"
            )
        logits = self.mask_generator(self.edges(images))
        regions = region_mask(logits, self.temperature, self.training)
        return F.interpolate(regions, size=images.shape[-2:], mode="nearest")

    def prompted(self, images: torch.Tensor) -> torch.Tensor:
        """x + P ⊙ mask."""
        return images + self.prompt() * self.mask(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_features(self.backbone, self.prompted(images)))

    def shared_form(
        self, rgb: bool = False, normalisation: Mapping[str, Any] | None = None
    ) -> SharedForm:
        """x + P ⊙ mask(x) per sample (the mask depends on the sample only)."""
        return SharedForm(head=self.head, inputs=self.prompted)
