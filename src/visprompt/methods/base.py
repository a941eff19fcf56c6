"""The interface every adaptation method implements, and the registry that builds them.

A method wraps a timm backbone (never copied, never retrained unless the method says so)
and adds its own tensors. The frozen part of the backbone always runs in eval mode, so
BatchNorm uses its running statistics and they never change.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from visprompt.atomic import atomic_directory
from visprompt.backbones import backbone_reference, freeze, num_features, pooled_features
from visprompt.methods import config_class
from visprompt.methods.config import MethodConfig, parse_options

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "prompt.safetensors"

_MODELS: dict[str, type[AdaptedModel]] = {}
log = logging.getLogger(__name__)


def private_backbone(backbone: nn.Module, *, copy_tensors: bool) -> nn.Module:
    """A copy of `backbone`'s modules that a method may freeze, wrap and move freely.

    The caller's object (its modules, flags, hooks, device) is never changed. Tensors are
    shared with the caller (no extra memory) unless `copy_tensors`: methods that update
    backbone tensors in place (BatchNorm statistics, trained weights) need their own.
    """
    if copy_tensors:
        return copy.deepcopy(backbone)
    memo: dict[int, Any] = {id(b): b for b in backbone.buffers()}
    for p in backbone.parameters():
        memo[id(p)] = nn.Parameter(p.detach(), requires_grad=p.requires_grad)
    return copy.deepcopy(backbone, memo)


class Classifier(nn.Module):
    """A (folded) backbone's pooled features into a head: the served form of a method."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        freeze(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_features(self.backbone, images))


@dataclass(frozen=True)
class SharedForm:
    """A model's adaptation as per-sample parts around its unmodified, shared backbone.

    logits = head(pooled features of the backbone on `inputs(x)`, with `activation`'s δ added
    to that layer's output and `tokens` (sets, p, D) in the ViT's sequence after the prefix;
    sets > 1: deep, one set per block). Each part acts on its own samples only, so samples of
    different versions run through one backbone call (`visprompt.serving.shared`).
    """

    head: Callable[[torch.Tensor], torch.Tensor]
    inputs: Callable[[torch.Tensor], torch.Tensor] | None = None
    activation: tuple[str, torch.Tensor] | None = None
    tokens: torch.Tensor | None = None
    pool_tokens: bool = False


class AdaptedModel(nn.Module):
    """A frozen backbone plus a method's trainable parts: the interface the training loop,
    evaluation and serving use, so none of them asks which method a model is.

    Subclasses are registered with `@register(TheirConfig)`, call
    `super().__init__(backbone, num_classes, config)` (which freezes the backbone) with the
    config whose backbone-dependent defaults they resolved, create their own modules,
    unfreeze what they train, set `head`, and implement `forward(images) -> logits`.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    #: Build inputs that are not options (not saved; e.g. VPT's `init_prompts` tensor).
    build_inputs: ClassVar[tuple[str, ...]] = ()
    #: True when the method trains the backbone as a whole (its BN/dropout run in train mode).
    trains_backbone: ClassVar[bool] = False
    #: The new classification head (its own learning rate, `training.param_groups`).
    head: nn.Module

    def __init__(
        self, backbone: nn.Module, num_classes: int, config: MethodConfig | None = None
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        #: timm name, model kwargs and tensor sha256 of the backbone as given (saved, checked
        #: on load), taken before the method changes anything.
        self.backbone_reference = backbone_reference(backbone)
        self.backbone = freeze(private_backbone(backbone, copy_tensors=self.trains_backbone))
        self.num_classes = int(num_classes)
        self.method_config = config or self.config_class()

    def train_backbone_parameters(self, names: Iterable[str]) -> None:
        """Make the backbone parameters `names` trainable, on tensors of this model's own.

        The frozen rest stays shared with the caller's backbone; what trains is copied first,
        so training (or loading an artifact) never writes into the caller's tensors.
        """
        for name in names:
            module_name, _, leaf = name.rpartition(".")
            module = self.backbone.get_submodule(module_name)
            shared = getattr(module, leaf)
            setattr(module, leaf, nn.Parameter(shared.detach().clone(), requires_grad=True))

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

    # -- capabilities other layers read (evaluation, serving) ------------------------------
    def served(
        self, rgb: bool = False, normalisation: Mapping[str, Any] | None = None
    ) -> nn.Module:
        """The deployed form, in eval mode (default: the model): a copy folded into the
        backbone where a method folds (LoRA merged, AP in a norm's β); with `rgb`, input-space
        serving where a method has one (PGN's prompt inversion, with the training
        `normalisation`). The model itself is never changed."""
        return self.eval()

    def shared_form(
        self, rgb: bool = False, normalisation: Mapping[str, Any] | None = None
    ) -> SharedForm | None:
        """The served form (`served(rgb, normalisation)`'s function) as per-sample parts on
        the unmodified backbone, or None (default) where the adaptation changes backbone
        weights (LoRA, full fine-tuning, norm/bias tuning): those are served on their own."""
        return None

    def extra_test_metrics(
        self, dataset: Any, data_config: Mapping[str, Any], batch_size: int, progress: bool
    ) -> dict[str, float]:
        """Method-specific test figures next to the run's test metrics (PGN: its RGB path)."""
        return {}

    def write_extra(self, directory: Path) -> None:
        """Write files other tools read next to the artifact (e.g. peft's adapter format)."""

    def split_for_cache(self) -> tuple[nn.Module, nn.Module] | None:
        """(frozen prefix, trainable suffix) with forward == suffix(prefix(x)), or None.

        Methods whose trainable part starts after a frozen, deterministic prefix (linear
        probe, AP) return it, so training can compute the prefix once and cache it.
        """
        return None

    @classmethod
    def from_config(cls, backbone: nn.Module, config: dict[str, Any]) -> AdaptedModel:
        """Rebuild an empty method from a saved config (tensors are loaded afterwards)."""
        options = parse_options(cls.config_class, config["options"])
        return cls(backbone, config["num_classes"], options)

    def config(self) -> dict[str, Any]:
        """What `load` needs to rebuild the method around a backbone, and which backbone."""
        return {
            "method": self.name,
            "num_classes": self.num_classes,
            "options": self.method_config.model_dump(),
            "backbone": self.backbone_reference,
        }


def register(config: type[MethodConfig]) -> Callable[[type[AdaptedModel]], type[AdaptedModel]]:
    """Class decorator: the model of the method `config.method`, built from `config`."""

    def deco(cls: type[AdaptedModel]) -> type[AdaptedModel]:
        if _MODELS.get(config.method, cls) is not cls:
            raise ValueError(f"method '{config.method}' is registered twice")
        cls.name, cls.config_class = config.method, config
        _MODELS[config.method] = cls
        return cls

    return deco


def method_class(name: str) -> type[AdaptedModel]:
    """The model class of method `name` (importing its model module)."""
    config_class(name)  # an unknown name lists the valid ones
    importlib.import_module(f"visprompt.methods.{name}.model")
    return _MODELS[name]


def build(name: str, backbone: nn.Module, num_classes: int, **options: Any) -> AdaptedModel:
    """Wrap `backbone` with method `name`; options are its config's fields (see METHODS.md).

    `backbone` itself is left exactly as it was (flags, modules, tensors): the model works
    on a private copy of its modules, so one backbone can serve several methods.
    """
    cls = method_class(name)
    inputs = {key: options.pop(key) for key in cls.build_inputs if key in options}
    return cls(backbone, num_classes, parse_options(cls.config_class, options), **inputs)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """{"trainable": ..., "total": ...} counted over unique tensors."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    return {
        "trainable": sum(p.numel() for p in seen.values() if p.requires_grad),
        "total": sum(p.numel() for p in seen.values()),
    }


def save(model: AdaptedModel, directory: str | Path) -> Path:
    """Write the method's tensors (safetensors) and config (JSON) as one folder, atomically.

    Saving the same model twice writes the same bytes; a folder left by a killed save is
    cleaned up by the next one (`visprompt.atomic`).
    """
    if not isinstance(model, AdaptedModel):
        raise TypeError(f"methods.save: expected an AdaptedModel, got {type(model).__name__}")
    directory = Path(directory)
    tensors = {k: v.contiguous().cpu() for k, v in model.prompt_state_dict().items()}
    config = model.config() | {"extra_state": model.extra_state()}
    with atomic_directory(directory) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        model.write_extra(tmp)
    return directory


def check_backbone(config: dict[str, Any], backbone: nn.Module, source: Path) -> None:
    """Refuse a backbone other than the one the artifact was trained on, naming both."""
    recorded = config.get("backbone")
    if not recorded:
        log.warning("%s records no backbone reference (saved by an older version)", source)
        return
    given = backbone_reference(backbone)
    same = recorded["sha256"] == given["sha256"] and recorded["name"] == given["name"]
    if not same:
        raise ValueError(
            f"{source} was trained on backbone {_describe(recorded)}, but the backbone given is "
            f"{_describe(given)}. Build the recorded backbone (same timm name, model_kwargs and "
            "weights) and pass that to methods.load."
        )


def _describe(reference: dict[str, Any]) -> str:
    kwargs = reference.get("model_kwargs")
    shown = f", model_kwargs {json.dumps(kwargs, sort_keys=True)}" if kwargs is not None else ""
    return f"'{reference['name']}'{shown} (tensor sha256 {str(reference['sha256'])[:12]}...)"


def load(directory: str | Path, backbone: nn.Module) -> AdaptedModel:
    """Rebuild a saved method around `backbone`, which must be the one it was trained on."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"no {CONFIG_FILE} in {directory}: not a visprompt artifact")
    config = json.loads(config_path.read_text())
    check_backbone(config, backbone, config_path)
    model = method_class(config["method"]).from_config(backbone, config)
    model.load_prompt_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    model.load_extra_state(config.get("extra_state", {}))
    return model
