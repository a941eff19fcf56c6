"""The interface every adaptation method implements, and the registry that builds them.

A method wraps a timm backbone (never copied, never retrained unless the method says so)
and adds its own tensors. The frozen part of the backbone always runs in eval mode, so
BatchNorm uses its running statistics and they never change.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from visprompt.backbones import freeze, num_features

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "prompt.safetensors"

_REGISTRY: dict[str, type[AdaptedModel]] = {}


class AdaptedModel(nn.Module):
    """A frozen backbone plus a method's trainable parts.

    Subclasses set `name`, call `super().__init__(backbone, num_classes, **options)` (which
    freezes the backbone), create their own modules, unfreeze what they train, and
    implement `forward(images) -> logits`. `options` are the method's JSON-serialisable
    build options: they are saved with the artifact and passed back to `build` on load.
    """

    name: ClassVar[str] = ""
    #: True when the method trains the backbone as a whole (its BN/dropout run in train mode).
    trains_backbone: ClassVar[bool] = False

    def __init__(self, backbone: nn.Module, num_classes: int, **options: Any) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone = freeze(backbone)
        self.num_classes = int(num_classes)
        self.options = dict(options)

    # -- heads ------------------------------------------------------------------------
    def new_head(self) -> nn.Linear:
        """A fresh linear head on the backbone's pooled features (trainable)."""
        return nn.Linear(num_features(self.backbone), self.num_classes)

    # -- training-time behaviour ----------------------------------------------------------
    def train(self, mode: bool = True) -> AdaptedModel:
        """Train the method's own modules; keep a frozen backbone in eval mode."""
        super().train(mode)
        if not self.trains_backbone:
            self.backbone.eval()
        return self

    def on_epoch_start(self, epoch: int, loader: Any | None = None) -> None:
        """Hook for schedules a method owns (temperatures, label remapping); default: none.

        `loader` yields (images, labels) batches of the training split, for methods that
        recompute something from data at the start of an epoch (ILM-VP).
        """

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups; methods with per-part learning rates override."""
        return [{"params": self.trainable_parameters(), "lr": lr, "weight_decay": weight_decay}]

    def extra_state(self) -> dict[str, Any]:
        """JSON-serialisable state that is not a tensor (e.g. a schedule's epoch)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` returned."""

    # -- what the method owns --------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Only what the method trains (everything with requires_grad)."""
        return [p for p in self.parameters() if p.requires_grad]

    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.named_parameters() if p.requires_grad)

    def prompt_state_dict(self) -> dict[str, torch.Tensor]:
        """The method's own tensors and head: trainable parameters plus buffers it owns.

        Buffers of the backbone itself are excluded unless the method trains the backbone.
        """
        state = {n: p.detach() for n, p in self.named_trainable_parameters()}
        for n, b in self.named_buffers():
            if self.trains_backbone or not n.startswith("backbone."):
                state[n] = b.detach()
        return state

    def load_prompt_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load what `prompt_state_dict` produced; names and shapes must match exactly."""
        own = self.prompt_state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(
                f"prompt state does not match method '{self.name}': "
                f"missing {missing[:10]}, unexpected {unexpected[:10]}"
            )
        targets = dict(self.named_parameters()) | dict(self.named_buffers())
        with torch.no_grad():
            for n, value in state.items():
                if targets[n].shape != value.shape:
                    raise ValueError(
                        f"shape mismatch for '{n}': artifact {tuple(value.shape)} vs "
                        f"model {tuple(targets[n].shape)}"
                    )
                targets[n].copy_(value)

    def split_for_cache(self) -> tuple[nn.Module, nn.Module] | None:
        """(frozen prefix, trainable suffix) with forward == suffix(prefix(x)), or None.

        Methods whose trainable part starts after a frozen, deterministic prefix (linear
        probe, AP) return it, so training can compute the prefix once and cache it.
        """
        return None

    @classmethod
    def from_config(cls, backbone: nn.Module, config: dict[str, Any]) -> AdaptedModel:
        """Rebuild an empty method from a saved config (tensors are loaded afterwards)."""
        return cls(backbone, config["num_classes"], **config["options"])

    def config(self) -> dict[str, Any]:
        """What `load` needs to rebuild the method around a backbone."""
        return {"method": self.name, "num_classes": self.num_classes, "options": self.options}


def register(name: str) -> Callable[[type[AdaptedModel]], type[AdaptedModel]]:
    """Class decorator: make a method available under `name`."""

    def deco(cls: type[AdaptedModel]) -> type[AdaptedModel]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method '{name}' is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available() -> list[str]:
    """Names of every registered method."""
    return sorted(_REGISTRY)


def method_class(name: str) -> type[AdaptedModel]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown method '{name}'; available: {', '.join(available())}")
    return _REGISTRY[name]


def build(name: str, backbone: nn.Module, num_classes: int, **options: Any) -> AdaptedModel:
    """Wrap `backbone` with method `name`; options are the method's own (see METHODS.md)."""
    return method_class(name)(backbone, num_classes, **options)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """{"trainable": ..., "total": ...} counted over unique tensors."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    return {
        "trainable": sum(p.numel() for p in seen.values() if p.requires_grad),
        "total": sum(p.numel() for p in seen.values()),
    }


def save(model: AdaptedModel, directory: str | Path) -> Path:
    """Write the method's tensors (safetensors) and config (JSON); atomic per directory."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous().cpu() for k, v in model.prompt_state_dict().items()}
    save_file(tensors, str(tmp / WEIGHTS_FILE))
    config = model.config() | {"extra_state": model.extra_state()}
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    if directory.exists():
        backup = directory.with_name(directory.name + ".old")
        directory.replace(backup)
        tmp.replace(directory)
        shutil.rmtree(backup)
    else:
        tmp.replace(directory)
    return directory


def load(directory: str | Path, backbone: nn.Module) -> AdaptedModel:
    """Rebuild a saved method around `backbone` (which must be the same architecture)."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"no {CONFIG_FILE} in {directory}: not a visprompt artifact")
    config = json.loads(config_path.read_text())
    model = method_class(config["method"]).from_config(backbone, config)
    model.load_prompt_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    model.load_extra_state(config.get("extra_state", {}))
    return model
