"""VP: a learned pixel prompt added to the normalised image (Bahng et al. 2022).

Designs (the prompt is v, the model sees x + v, both in normalised space):
- `pad`: four border strips of width p, centre untouched; 12·p·(S−p) parameters.
- `fixed_patch`: a p×p patch at the top-left corner; 3·p² parameters.
- `random_patch`: the same patch at a uniformly random location, drawn once per batch in
  training; at evaluation it sits at the top-left corner (deterministic, identical to
  `fixed_patch`), so a trained model is reproducible. Offsets are 0..S−p inclusive, every
  placement of the patch; the reference (hjbahng/visual_prompting, `RandomPatchPrompter`)
  draws `np.random.choice(S − p)`, 0..S−p−1, so its patch never touches the bottom or right
  edge: an off-by-one we do not copy (it also fails for p = S).
Prompts start random-normal (std 1, the scale of normalised pixels).

Output side: `head` (a new linear head on the pooled features), or the frozen source head
through a label mapping (`first_k`, `frequency`, `iterative`; see `label_mapping`), in
which case only the prompt trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from visprompt.backbones import data_config, num_source_classes, pooled_features
from visprompt.backbones import image_size as backbone_image_size
from visprompt.data.transforms import to_model_input
from visprompt.methods.base import AdaptedModel, SharedForm, register
from visprompt.methods.vp.config import VPConfig
from visprompt.methods.vp.label_mapping import LabelMapping


def default_prompt_size(size: int) -> int:
    """The reference pad width 30 at 224 px, scaled to `size` (4 at 32 px)."""
    return max(1, round(30 * size / 224))


class PadPrompt(nn.Module):
    """Four learned border strips of width p around an untouched S×S centre.

    Only the border is a parameter (12·p·(S−p) values); `forward()` materialises the full
    (1, 3, S, S) prompt with zeros in the centre, and `mask` is 1 on the border, 0 inside.
    """

    def __init__(self, image_size: int, prompt_size: int) -> None:
        super().__init__()
        if not 1 <= prompt_size <= image_size // 2:
            raise ValueError(
                f"pad prompt_size must be in [1, {image_size // 2}] for image_size "
                f"{image_size} (p = S/2 covers the whole image); got {prompt_size}"
            )
        s, p = image_size, prompt_size
        self.image_size, self.prompt_size = s, p
        self.top = nn.Parameter(torch.randn(3, p, s))
        self.bottom = nn.Parameter(torch.randn(3, p, s))
        self.left = nn.Parameter(torch.randn(3, s - 2 * p, p))
        self.right = nn.Parameter(torch.randn(3, s - 2 * p, p))

    def forward(self) -> torch.Tensor:
        inner = self.image_size - 2 * self.prompt_size
        centre = self.left.new_zeros(3, inner, inner)
        middle = torch.cat([self.left, centre, self.right], dim=2)
        return torch.cat([self.top, middle, self.bottom], dim=1).unsqueeze(0)

    @property
    def mask(self) -> torch.Tensor:
        """(1, 1, S, S): 1 where the prompt has parameters (the border), 0 in the centre."""
        s, p = self.image_size, self.prompt_size
        mask = torch.ones(1, 1, s, s, device=self.top.device, dtype=self.top.dtype)
        mask[..., p : s - p, p : s - p] = 0
        return mask


class PatchPrompt(nn.Module):
    """A learned 3×p×p patch on a zero S×S canvas (3·p² parameters)."""

    def __init__(self, image_size: int, prompt_size: int, random_location: bool) -> None:
        super().__init__()
        if not 1 <= prompt_size <= image_size:
            raise ValueError(f"patch prompt_size must be in [1, {image_size}]; got {prompt_size}")
        self.image_size, self.prompt_size = image_size, prompt_size
        self.random_location = random_location
        self.patch = nn.Parameter(torch.randn(3, prompt_size, prompt_size))

    def forward(self) -> torch.Tensor:
        room = self.image_size - self.prompt_size
        top = left = 0
        if self.training and self.random_location and room > 0:
            top, left = (int(v) for v in torch.randint(0, room + 1, (2,)))
        return F.pad(self.patch, (left, room - left, top, room - top)).unsqueeze(0)


@register(VPConfig)
class VisualPrompt(AdaptedModel):
    """x + v into the frozen backbone; a new head or a label mapping on the source head."""

    def __init__(self, backbone: nn.Module, num_classes: int, config: VPConfig) -> None:
        size = int(config.image_size or backbone_image_size(backbone))
        p = int(config.prompt_size or default_prompt_size(size))
        resolved = config.model_copy(update={"prompt_size": p, "image_size": size})
        super().__init__(backbone, num_classes, resolved)
        self.image_size = size
        if config.design == "pad":
            self.prompt: nn.Module = PadPrompt(size, p)
        else:
            self.prompt = PatchPrompt(size, p, random_location=config.design == "random_patch")
        if config.output == "head":
            self.head: nn.Module = self.new_head()
        else:
            self.head = LabelMapping(config.output, self.num_classes, num_source_classes(backbone))

    def prompted(self, images: torch.Tensor) -> torch.Tensor:
        """x + v; the images must already have the prompt's spatial size."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"vp: images are {tuple(images.shape[-2:])} but the prompt is "
                f"{self.image_size}×{self.image_size}; resize inputs to image_size"
            )
        return images + self.prompt()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.prompted(images)
        if isinstance(self.head, LabelMapping):
            return self.head(self.backbone(x))
        return self.head(pooled_features(self.backbone, x))

    def shared_form(
        self, rgb: bool = False, normalisation: Mapping[str, Any] | None = None
    ) -> SharedForm:
        """x + v per sample; a label mapping reads the backbone's own classifier, as
        `forward` does."""
        if isinstance(self.head, LabelMapping):
            classifier = self.backbone.get_classifier()
            return SharedForm(head=lambda f: self.head(classifier(f)), inputs=self.prompted)
        return SharedForm(head=self.head, inputs=self.prompted)

    def on_epoch_start(self, epoch: int, loader: Any | None = None) -> None:
        """Recompute a `frequency` (once) or `iterative` (every epoch) label mapping.

        `loader` yields (images, labels) of the training split; uint8 images are
        preprocessed with the backbone's data config, float images are used as given.
        The source predictions are taken in eval mode (a `random_patch` sits top-left).
        """
        if not isinstance(self.head, LabelMapping) or not self.head.needs_update():
            return
        if loader is None:
            raise ValueError(
                f"vp output '{self.head.strategy}' recomputes its label mapping from the "
                "training data: call on_epoch_start(epoch, loader) with a training loader"
            )
        was_training = self.training
        self.eval()
        try:
            self.head.update(self._source_logits, loader)
        finally:
            self.train(was_training)

    def _source_logits(self, images: torch.Tensor) -> torch.Tensor:
        device = next(self.prompt.parameters()).device
        if images.dtype == torch.uint8:
            cfg = data_config(self.backbone)
            images = to_model_input(images.to(device), self.image_size, cfg["mean"], cfg["std"])
        return self.backbone(self.prompted(images.to(device)))
