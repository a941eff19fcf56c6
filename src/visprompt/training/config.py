"""What a training run is: the `TrainConfig` options and the `Preprocess` of its inputs.

`TrainConfig` is a strict pydantic dataclass, like the method configs: the Kedro parameters
YAML maps onto it one to one, a quoted `lr: "0.01"` or an unknown key is refused before
anything trains, and `from_dict` says which option and what is allowed in one sentence.
It imports no torch, so the preflight checks a run list without it.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic.types import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

if TYPE_CHECKING:  # torch loads when images are transformed: a run list is checked without it
    import torch

#: Kinds of parameter `no_weight_decay` may exempt from weight decay (training.param_groups),
#: as a list in YAML (so not strict: a strict tuple refuses a list).
NoDecayKinds = Annotated[tuple[Literal["bias", "norm", "prompt"], ...], Field(strict=False)]
#: Fields that never change the numbers a run produces; left out of the config hash so that
#: a resumed run may use another worker count, checkpoint folder or logging cadence.
_NOT_HASHED = ("num_workers", "checkpoint_dir", "log_every", "progress", "cache_max_bytes")
#: What a pydantic type error expects, in the words of a YAML file.
_TYPES = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
          "string_type": "a string", "tuple_type": "a list"}  # fmt: skip


class OptionError(ValueError):
    """A bad `TrainConfig` value; `field` names the option (callers say where it was set)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# not frozen: Lightning's spawn launcher rebuilds the dataclasses it passes to its workers
@pydantic_dataclass(config=ConfigDict(strict=True, extra="forbid", validate_default=True))
class TrainConfig:
    """Options of one training run.

    `batch_size` is the GLOBAL batch: with `devices=k` processes each one sees
    `batch_size // k` images per step (it must divide evenly), so the same config gives the
    same optimisation on one process or many. The learning rate follows a linear warm-up over
    `warmup_epochs` (at most `epochs`) then a cosine decay to `min_lr` (at most `lr`), updated
    every optimizer step. `patience` stops training after that many epochs without a better
    validation top-1 (None: never stop early). `augment="flip_crop"` is a batched on-device
    random crop with zero padding (image_size // 8 pixels, in normalised space) plus a
    horizontal flip; `"none"` feeds deterministic inputs. `cache_prefix` computes a frozen
    prefix once and trains only the suffix when the model offers `split_for_cache()` and
    `augment="none"`; the cache holds up to `cache_max_bytes` on the device, spills to a
    temporary file past it, and is freed when `fit` returns. `log_every` logs every that many
    steps (0: not per step).
    `accelerator`, `devices`, `strategy`, `precision` are Lightning Fabric's own options.
    The defaults are the project's (conf/base/parameters_training.yml states no other value:
    tests/pipelines/test_run_config.py checks it).
    `lr`/`weight_decay` apply to the method's own tensors; the new head uses `head_lr` and
    `head_weight_decay` when set (None: the method's); parameters of the kinds in
    `no_weight_decay` (`bias`, `norm`, `prompt`) get none (see
    `visprompt.training.param_groups`).
    """

    epochs: PositiveInt = 6
    batch_size: PositiveInt = 64
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: PositiveFloat = 0.03
    weight_decay: NonNegativeFloat = 0.0
    head_lr: PositiveFloat | None = None
    head_weight_decay: NonNegativeFloat | None = None
    no_weight_decay: NoDecayKinds = ("bias", "norm", "prompt")
    momentum: float = 0.9
    warmup_epochs: NonNegativeFloat = 1.0
    min_lr: NonNegativeFloat = 1e-5
    patience: PositiveInt | None = None
    augment: Literal["none", "flip_crop"] = "none"
    seed: int = 0
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    precision: str = "32-true"
    num_workers: NonNegativeInt = 0
    checkpoint_dir: str | None = None
    cache_prefix: bool = False
    cache_max_bytes: int = 2 * 1024**3
    log_every: NonNegativeInt = 0
    progress: bool = True

    @field_validator("warmup_epochs", "min_lr")
    @classmethod
    def _at_most_its_bound(cls, value: float, info: ValidationInfo) -> float:
        """warmup_epochs <= epochs, min_lr <= lr (each bound is declared, so checked, first)."""
        bound = {"warmup_epochs": "epochs", "min_lr": "lr"}[info.field_name]
        if bound in info.data and value > info.data[bound]:
            raise ValueError(f"at most {bound}={info.data[bound]}")
        return value

    @field_validator("devices")
    @classmethod
    def _splits_the_batch(cls, value: int | str, info: ValidationInfo) -> int | str:
        """A stated number of processes must divide the global batch (each takes an equal
        share); "auto", -1 or a device list are resolved by Fabric and checked in `fit`."""
        count = value if isinstance(value, int) else int(value) if value.isdigit() else None
        batch = info.data.get("batch_size")
        if count and batch and batch % count:
            fits = [n for n in range(1, batch + 1) if batch % n == 0]
            raise ValueError(
                f"a number of processes batch_size={batch} is divisible by (the global batch "
                f"is split evenly over the devices): devices in {fits}, or a batch_size that "
                f"is a multiple of {count} (e.g. {batch + count - batch % count})"
            )
        return value

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> TrainConfig:
        """Build from a parameters mapping; the first mistake is an `OptionError` in one
        sentence (an unknown key lists the valid ones, a bad value says what is expected)."""
        try:
            return cls(**params)
        except ValidationError as error:
            raise _option_error(error, params) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def result_fields(self) -> dict[str, Any]:
        """The options that change the numbers (what a checkpoint must agree with)."""
        return {k: v for k, v in self.to_dict().items() if k not in _NOT_HASHED}


def _option_error(error: ValidationError, params: Mapping[str, Any]) -> OptionError:
    """`lr is 'fast' (str); expected a number`: the first mistake, in the YAML's words."""
    errors = error.errors(include_url=False)
    key = str(errors[0]["loc"][0])
    if errors[0]["type"] == "unexpected_keyword_argument":
        valid = ", ".join(sorted(f.name for f in dataclasses.fields(TrainConfig)))
        return OptionError(key, f"unknown training option '{key}'; valid: {valid}")
    wanted = [
        ("a list of " if isinstance(e["loc"][-1], int) else "")
        + (_TYPES.get(e["type"]) or re.sub("^(Input should be |Value error, )", "", e["msg"]))
        for e in errors
        if e["loc"][0] == key
    ]
    if type(None) in typing.get_args(TrainConfig.__pydantic_fields__[key].annotation):
        wanted.append("null")
    value = params.get(key, errors[0]["input"])
    return OptionError(
        key, f"{key} is {value!r} ({type(value).__name__}); expected {' or '.join(wanted)}"
    )


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
