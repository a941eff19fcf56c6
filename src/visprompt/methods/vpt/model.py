"""VPT: learned prompt tokens in a frozen ViT's sequence (Jia et al. 2022); SPT init.

- `shallow`: p tokens enter once, right after the prefix tokens (CLS, registers) and after
  the position embeddings were added, so prompts carry no position embedding:
  [prefix, prompts, patches]. They pass through `norm_pre` with the rest of the sequence
  (it is the identity except in pre-normed, CLIP-style ViTs).
- `deep`: before every block i ≥ 1 the previous block's p prompt outputs are replaced by
  layer i's own prompts; L sets in total, the sequence stays N + prefix + p long.
- Init `random`: uniform(±√(6/(3·P²+D))) with P the patch size; `spt`: the values given
  as `init_prompts` (layers, p, D) (Self-Prompt Tuning; built by the prompt_init pipeline).
  Departure from the SPT reference (SinAxCosB/Self-Prompt-Tuning): its shallow variant
  always samples p random layer-0 tokens, whatever the strategy; here a shallow SPT init
  applies its strategy (k-means, random, mean/max window pooling) to the layer-0 tokens as
  the deep variant does for its layer 0, so the strategies can be compared shallow too.
  `spt_random` with variant shallow is the reference's shallow behaviour.
- Optional dropout on the prompt tokens (training only).
- Pooling follows the backbone: CLS pooling reads index 0; with average (or attention)
  pooling the prompt outputs are excluded by default (`pool_prompts=False`), so the
  pooled features average the same image tokens the backbone was trained to pool;
  `pool_prompts=True` is timm's plain behaviour (every non-prefix token).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from visprompt.backbones import require_family
from visprompt.methods import vit_tokens as vt
from visprompt.methods.base import AdaptedModel, SharedForm, register
from visprompt.methods.config import parse_options
from visprompt.methods.vpt.config import VPTConfig


def uniform_bound(vit: nn.Module) -> float:
    """VPT's init range √(6/(3·P²+D)): Xavier-uniform for the patch-embedding fan-in."""
    ph, pw = vit.patch_embed.patch_size
    return math.sqrt(6.0 / (3 * ph * pw + vit.embed_dim))


@register(VPTConfig)
class VisualPromptTuning(AdaptedModel):
    """Prompt tokens (+ per block for `deep`) and a new head on a frozen timm ViT.

    Options: `VPTConfig`. `init_prompts` (a tensor, needed for `init='spt'`) is a build
    input only; it is not saved with the options.
    """

    build_inputs = ("init_prompts",)

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        config: VPTConfig,
        init_prompts: torch.Tensor | None = None,
    ) -> None:
        require_family(backbone, "vit", "vpt")
        vt.require_token_vit(backbone, "vpt")
        super().__init__(backbone, num_classes, config)
        self.deep = config.variant == "deep"
        self.num_prompts = config.num_prompts
        self.pool_prompts = config.pool_prompts
        self.num_prefix = vt.num_prefix_tokens(backbone)
        sets = len(backbone.blocks) if self.deep else 1
        shape = (sets, self.num_prompts, backbone.embed_dim)
        self.prompts = nn.Parameter(self._initial_prompts(shape, config.init, init_prompts))
        self.prompt_dropout = nn.Dropout(config.dropout)
        self.head = self.new_head()

    def _initial_prompts(
        self, shape: tuple[int, int, int], init: str, init_prompts: torch.Tensor | None
    ) -> torch.Tensor:
        if init == "random":
            if init_prompts is not None:
                raise ValueError("vpt: init_prompts is given but init='random'; use init='spt'")
            bound = uniform_bound(self.backbone)
            return torch.empty(shape).uniform_(-bound, bound)
        if init_prompts is None:
            raise ValueError(
                "vpt init='spt' needs init_prompts=<tensor (layers, p, D)> from the prompt_init "
                "pipeline"
            )
        if tuple(init_prompts.shape) != shape:
            raise ValueError(
                f"vpt: init_prompts has shape {tuple(init_prompts.shape)}, expected {shape} "
                f"(layers = {'blocks' if self.deep else '1 for shallow'}, p = num_prompts, "
                "D = embed_dim)"
            )
        return init_prompts.detach().to(torch.float32).clone()

    def _layer_prompts(self, layer: int, batch: int) -> torch.Tensor:
        """Layer `layer`'s prompts for a batch; dropout masks differ per image."""
        return self.prompt_dropout(self.prompts[layer].expand(batch, -1, -1))

    def _replace_deep(self, block: int, tokens: torch.Tensor) -> torch.Tensor:
        if block == 0:
            return tokens
        prompts = self._layer_prompts(block, tokens.shape[0])
        return vt.replace_tokens(tokens, prompts, self.num_prefix)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        vit = self.backbone
        tokens = vt.prefix_and_pos(vit, vt.embed_patches(vit, images))
        prompts = self._layer_prompts(0, tokens.shape[0])
        tokens = vt.start_blocks(vit, vt.insert_tokens(tokens, prompts, self.num_prefix))
        tokens = vt.run_blocks(vit, tokens, self._replace_deep if self.deep else None)
        features = vt.head_from_tokens(vit, tokens, self.num_prompts, self.pool_prompts)
        return self.head(features)

    def shared_form(
        self, rgb: bool = False, normalisation: Mapping[str, Any] | None = None
    ) -> SharedForm:
        """The prompt tokens (one set per block when deep) per sample; dropout is off."""
        return SharedForm(
            head=self.head, tokens=self.prompts.detach(), pool_tokens=self.pool_prompts
        )

    @classmethod
    def from_config(cls, backbone: nn.Module, config: dict[str, Any]) -> AdaptedModel:
        """Rebuild for `load`: SPT prompts get a zero placeholder that the artifact overwrites."""
        options = parse_options(VPTConfig, config["options"])
        placeholder = None
        if options.init == "spt":
            sets = len(backbone.blocks) if options.variant == "deep" else 1
            placeholder = torch.zeros(sets, options.num_prompts, backbone.embed_dim)
        return cls(backbone, config["num_classes"], options, placeholder)
