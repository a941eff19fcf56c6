"""What a training run is: the `TrainConfig` options and the `Preprocess` of its inputs.

Both are plain dataclasses so that the Kedro parameters YAML maps onto them one to one
(`TrainConfig(**params)`); a wrong option name or value is an error that says which field
and what is allowed, before anything trains.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visprompt.training.typecheck import expected, matches

if TYPE_CHECKING:  # torch loads when images are transformed: a run list is checked without it
    import torch

OPTIMIZERS = ("sgd", "adam", "adamw")
AUGMENTATIONS = ("none", "flip_crop")
#: Kinds of parameter `no_weight_decay` may exempt from weight decay (training.param_groups).
NO_DECAY_KINDS = ("bias", "norm", "prompt")

#: Fields that never change the numbers a run produces; left out of the config hash so that
#: a resumed run may use another worker count, checkpoint folder or logging cadence.
_NOT_HASHED = ("num_workers", "checkpoint_dir", "log_every", "progress", "cache_max_bytes")


class OptionError(ValueError):
    """A bad `TrainConfig` value; `field` names the option (callers say where it was set)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class TrainConfig:
    """Options of one training run.

    `batch_size` is the GLOBAL batch: with `devices=k` processes each one sees
    `batch_size // k` images per step (it must divide evenly), so the same config gives the
    same optimisation on one process or many. The learning rate follows a linear warm-up over
    `warmup_epochs` then a cosine decay to `min_lr`, updated every optimizer step.
    `patience` stops training after that many epochs without a better validation top-1
    (None: never stop early). `augment="flip_crop"` is a batched on-device random crop with
    zero padding (image_size // 8 pixels, in normalised space) plus a horizontal flip;
    `"none"` feeds deterministic inputs. `cache_prefix` computes a frozen prefix once and
    trains only the suffix when the model offers `split_for_cache()` and `augment="none"`;
    the cache holds up to `cache_max_bytes` on the device, spills to a temporary file past
    it, and is freed when `fit` returns.
    `accelerator`, `devices`, `strategy`, `precision` are Lightning Fabric's own options.
    The defaults are the project's (conf/base/parameters_training.yml states no other value:
    tests/pipelines/test_run_config.py checks it).
    `lr`/`weight_decay` apply to the method's own tensors; the new head uses `head_lr` and
    `head_weight_decay` when set; parameters of the kinds in `no_weight_decay` (`bias`,
    `norm`, `prompt`) get none (see `visprompt.training.param_groups`).
    """

    epochs: int = 6
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 0.03
    weight_decay: float = 0.0
    head_lr: float | None = None
    head_weight_decay: float | None = None
    no_weight_decay: tuple[str, ...] = NO_DECAY_KINDS
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    min_lr: float = 1e-5
    patience: int | None = None
    augment: str = "none"
    seed: int = 0
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    precision: str = "32-true"
    num_workers: int = 0
    checkpoint_dir: str | None = None
    cache_prefix: bool = False
    cache_max_bytes: int = 2 * 1024**3
    log_every: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> OptionError:
            return OptionError(name, f"TrainConfig.{name}={getattr(self, name)!r}: {why}")

        for name, hint in typing.get_type_hints(type(self)).items():
            value = getattr(self, name)
            if not matches(value, hint):
                raise bad(name, f"expected {expected(hint)}, got {type(value).__name__}")
        if self.epochs < 1:
            raise bad("epochs", "must be >= 1")
        if self.batch_size < 1:
            raise bad("batch_size", "must be >= 1")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"must be one of {OPTIMIZERS}")
        if self.lr <= 0:
            raise bad("lr", "must be > 0")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        if self.head_lr is not None and self.head_lr <= 0:
            raise bad("head_lr", "must be > 0, or null to use lr")
        if self.head_weight_decay is not None and self.head_weight_decay < 0:
            raise bad("head_weight_decay", "must be >= 0, or null to use weight_decay")
        self.no_weight_decay = tuple(self.no_weight_decay)
        if not set(self.no_weight_decay) <= set(NO_DECAY_KINDS):
            raise bad("no_weight_decay", f"must list kinds from {NO_DECAY_KINDS} (or be [])")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise bad("warmup_epochs", f"must lie in [0, epochs={self.epochs}]")
        if not 0 <= self.min_lr <= self.lr:
            raise bad("min_lr", f"must lie in [0, lr={self.lr}]")
        if self.patience is not None and self.patience < 1:
            raise bad("patience", "must be >= 1, or None to disable early stopping")
        if self.augment not in AUGMENTATIONS:
            raise bad("augment", f"must be one of {AUGMENTATIONS}")
        if self.num_workers < 0:
            raise bad("num_workers", "must be >= 0")
        if self.log_every < 0:
            raise bad("log_every", "must be >= 0 (0 disables step logging)")

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> TrainConfig:
        """Build from a parameters mapping; unknown keys are an error listing the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise ValueError(
                f"unknown training option(s) {unknown}; valid options: {', '.join(sorted(names))}"
            )
        return cls(**dict(params))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def result_fields(self) -> dict[str, Any]:
        """The options that change the numbers (what a checkpoint must agree with)."""
        return {k: v for k, v in self.to_dict().items() if k not in _NOT_HASHED}


@dataclass(frozen=True)
class Preprocess:
    """uint8 NCHW batch -> resized, normalised float batch, run on the batch's device."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ValueError(f"Preprocess.image_size must be >= 1, got {self.image_size}")
        if len(self.mean) != len(self.std):
            raise ValueError(f"Preprocess mean {self.mean} and std {self.std} differ in length")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"Preprocess.std must be > 0, got {self.std}")

    @classmethod
    def from_data_config(cls, config: Mapping[str, Any]) -> Preprocess:
        """From `visprompt.backbones.data_config(model)` (input_size, mean, std)."""
        missing = [k for k in ("input_size", "mean", "std") if k not in config]
        if missing:
            raise KeyError(f"data config lacks {missing}; expected backbones.data_config output")
        return cls(
            image_size=int(_last(config["input_size"])),
            mean=tuple(float(m) for m in config["mean"]),
            std=tuple(float(s) for s in config["std"]),
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        from visprompt.data.transforms import to_model_input

        return to_model_input(images, self.image_size, self.mean, self.std)

    def to_dict(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Preprocess:
        """Inverse of `to_dict`."""
        return cls(int(values["image_size"]), tuple(values["mean"]), tuple(values["std"]))


def _last(size: int | Sequence[int]) -> int:
    return size if isinstance(size, int) else size[-1]
