"""LoRA: low-rank updates on the backbone's linears/convs through the `peft` library."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from peft.utils import CONFIG_NAME
from safetensors.torch import save_file
from torch import nn

from visprompt.backbones import family, pooled_features
from visprompt.methods.base import AdaptedModel, Classifier, register
from visprompt.methods.lora.config import LoRAConfig

#: peft's adapter files (what `PeftModel.from_pretrained(backbone, folder)` reads)
PEFT_CONFIG, PEFT_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"


def default_targets(backbone: nn.Module) -> list[str]:
    """Module paths LoRA adapts when `targets` is not given.

    ViT: every linear inside the blocks (attention qkv/proj, MLP fc1/fc2); the patch
    embedding and the source head stay as they are. CNN: every ungrouped conv and every
    linear except the source classifier (depthwise convs are skipped: peft's LoRA needs the
    rank divisible by the groups).
    """
    classifier = backbone.get_classifier() if hasattr(backbone, "get_classifier") else None
    names = []
    for name, m in backbone.named_modules():
        if m is classifier:
            continue
        if family(backbone) == "vit":
            if name.startswith("blocks.") and isinstance(m, nn.Linear):
                names.append(name)
        elif isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1):
            names.append(name)
    return names


def canonical_json(config: Mapping[str, Any]) -> str:
    """peft's adapter config as `save_pretrained` writes it, but with every set sorted: peft
    writes `target_modules` (a set) in string-hash order, which changes between processes, so
    the same adapter got new bytes, a new content hash and a new registered version per run."""
    plain = {k: sorted(v) if isinstance(v, set | frozenset) else v for k, v in config.items()}
    return json.dumps(plain, indent=2, sort_keys=True)


@register(LoRAConfig)
class LoRA(AdaptedModel):
    """LoRA matrices (rank `rank`, scale `alpha / rank`) on `targets`, plus a new head.

    `targets` None adapts `default_targets`. peft wraps the target layers of the model's
    private copy of the backbone (the original layer becomes `base_layer`, its weights shared
    with the caller's, untouched and frozen). peft freezes every non-LoRA backbone tensor; the
    frozen backbone stays in eval mode, except the LoRA dropout modules, which follow
    `train()`.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, config: LoRAConfig) -> None:
        if any(isinstance(m, LoraLayer) for m in backbone.modules()):
            raise ValueError("this backbone already carries LoRA layers; pass a fresh backbone")
        super().__init__(backbone, num_classes, config)
        targets = config.targets
        peft_config = LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=targets if targets is not None else default_targets(self.backbone),
            bias="none",
        )
        try:
            inject_adapter_in_model(peft_config, self.backbone)
        except ValueError as err:
            raise ValueError(
                f"lora targets {targets!r} match no supported layer of "
                f"{type(self.backbone).__name__} (linears/convs, e.g. "
                f"{', '.join(default_targets(self.backbone)[:6])}): {err}"
            ) from err
        self.head = self.new_head()

    def train(self, mode: bool = True) -> LoRA:
        """Frozen backbone in eval; the LoRA dropout follows `mode`."""
        super().train(mode)
        for m in self.backbone.modules():
            if isinstance(m, LoraLayer):
                m.lora_dropout.train(mode)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_features(self.backbone, images))

    def served(
        self, rgb: bool = False, normalisation: Mapping[str, Any] | None = None
    ) -> nn.Module:
        """A copy with every LoRA update merged into its base weight (peft's `merge`) and
        the peft wrappers removed: the plain backbone's speed, the same function."""
        backbone = copy.deepcopy(self.backbone)
        for name, module in list(backbone.named_modules()):
            if isinstance(module, LoraLayer):
                module.merge(safe_merge=True)
                parent, _, leaf = name.rpartition(".")
                setattr(backbone.get_submodule(parent), leaf, module.get_base_layer())
        del backbone.peft_config
        return Classifier(backbone, copy.deepcopy(self.head))

    def write_extra(self, directory: Path) -> None:
        """peft's adapter format next to the artifact, for peft tooling (the head is not in
        it: it lives in the artifact's own safetensors)."""
        config = self.backbone.peft_config["default"].to_dict()
        config["base_model_name_or_path"] = self.backbone_reference["name"]
        (directory / CONFIG_NAME).write_text(canonical_json(config))
        state = get_peft_model_state_dict(self.backbone)
        tensors = {f"base_model.model.{k}": v.contiguous().cpu() for k, v in state.items()}
        save_file(tensors, str(directory / PEFT_WEIGHTS))
