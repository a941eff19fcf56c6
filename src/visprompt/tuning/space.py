"""Declarative search spaces: `parameters_tuning.yml` entries -> Optuna suggestions -> a run.

A space is per method (`{lr: {low: 1e-4, high: 1.0, log: true}, layer: {choices: [...]}}`):
a `TrainConfig` field tunes the run's `train`, a build option of the method its `options`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from visprompt.methods import config_class
from visprompt.training.config import TrainConfig
from visprompt.training.runs import ConfigError, RunSpec

log = logging.getLogger(__name__)

FILE = "parameters_tuning.yml"
_KEYS = {"low", "high", "log", "step", "choices"}
_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
#: Options an SPT run cannot tune: its prompt init was built for the configured size.
_INIT_SIZED = ("num_prompts", "variant")


@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter: a float/int range (optionally log or stepped) or choices."""

    name: str
    target: str  # "train" (a TrainConfig field) or "options" (a method build option)
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        ints = all(isinstance(v, int) for v in (self.low, self.high, self.step or 1))
        if ints:
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)


def parse_dimension(method: str, name: str, entry: Any, where: str) -> Dimension:
    """One entry of `tuning.spaces.<method>`; errors name the field and the fix."""
    where = f"{where}.{name}"
    if name in _TRAIN_FIELDS:
        target = "train"
    elif name in config_class(method).model_fields:
        target = "options"
    else:
        train = ", ".join(sorted(_TRAIN_FIELDS))
        raise ValueError(
            f"{FILE}: {where}: '{name}' is neither a training option ({train}) nor a build "
            f"option of {method} ({', '.join(config_class(method).model_fields)})"
        )
    if not isinstance(entry, Mapping) or not entry or set(entry) - _KEYS:
        raise ValueError(
            f"{FILE}: {where} must be a mapping with low/high (and log, step) or choices, "
            f"got {entry!r}"
        )
    if "choices" in entry:
        choices = entry["choices"]
        if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
            raise ValueError(f"{FILE}: {where}.choices must be a non-empty list, got {choices!r}")
        if set(entry) != {"choices"}:
            raise ValueError(f"{FILE}: {where}: give either choices or low/high, not both")
        return Dimension(name, target, choices=tuple(choices))
    low, high = entry.get("low"), entry.get("high")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not low < high:
        raise ValueError(
            f"{FILE}: {where}: needs numbers low < high, got low={low!r} high={high!r}"
        )
    log_scale = bool(entry.get("log", False))
    if log_scale and low <= 0:
        raise ValueError(f"{FILE}: {where}: log: true needs low > 0, got {low!r}")
    return Dimension(name, target, low, high, log_scale, entry.get("step"))


def run_space(
    spec: RunSpec,
    spaces: Mapping[str, Any],
    only: Sequence[str] | None = None,
    own: Mapping[str, Any] | None = None,
) -> dict[str, Dimension]:
    """The dimensions `spec` searches: its method's space plus the run's `own` dimensions
    (`tuning.run_spaces.<run>`, e.g. AP layers of its backbone), or the part named in `only`.
    """
    where = f"tuning.spaces.{spec.method}"
    if spec.method not in (spaces or {}) and not own:
        raise ValueError(
            f"{FILE}: no search space for method '{spec.method}' (run '{spec.name}'); add "
            f"{where}, or leave the run out of tuning.runs"
        )
    space = {
        name: parse_dimension(spec.method, name, entry, where)
        for name, entry in (spaces.get(spec.method) or {}).items()
    }
    space |= {
        name: parse_dimension(spec.method, name, entry, f"tuning.run_spaces.{spec.name}")
        for name, entry in (own or {}).items()
    }
    if only is not None:
        unknown = sorted(set(only) - set(space))
        if unknown:
            raise ValueError(
                f"{FILE}: tuning.runs.{spec.name} names {unknown}, not in {where} "
                f"({', '.join(space)})"
            )
        space = {name: space[name] for name in only}
    if spec.prompt_init is not None:
        fixed = [n for n in _INIT_SIZED if n in space]
        if fixed:
            log.info("run %s keeps %s: its prompt init %s has that size", spec.name, fixed,
                     spec.prompt_init)  # fmt: skip
            space = {n: d for n, d in space.items() if n not in fixed}
    if not space:
        raise ValueError(f"{FILE}: run '{spec.name}' has nothing to tune in {where}")
    return space


def suggest(trial: optuna.Trial, space: Mapping[str, Dimension]) -> dict[str, Any]:
    """One value per dimension, drawn by the study's sampler."""
    return {name: dim.suggest(trial) for name, dim in space.items()}


def overrides(space: Mapping[str, Dimension], values: Mapping[str, Any]) -> dict[str, Any]:
    """{"options": {...}, "train": {...}}: what `values` change in a run."""
    out: dict[str, dict[str, Any]] = {"options": {}, "train": {}}
    for name, value in values.items():
        out[space[name].target][name] = value
    return out


def apply(spec: RunSpec, changes: Mapping[str, Mapping[str, Any]]) -> RunSpec:
    """`spec` with `overrides(...)` applied on top of its configured options and train."""
    return dataclasses.replace(
        spec,
        options={**spec.options, **changes.get("options", {})},
        train={**spec.train, **changes.get("train", {})},
    )


HPARAMS = ("config", "tuned")


def chosen_hparams(
    run: str, hparams: str, tuned: Mapping[str, Any] | None
) -> tuple[dict[str, dict[str, Any]], str]:
    """(changes to apply to `run`, source): `({}, "config")` or the run's `tuned` values."""
    if hparams not in HPARAMS:
        raise ConfigError(
            f"parameters_training.yml: training.hparams is {hparams!r}; valid: {', '.join(HPARAMS)}"
        )
    if hparams == "config":
        return {}, "config"
    if not tuned or run not in tuned:
        raise ConfigError(
            f"training.hparams is 'tuned' but data/05_model_input/tuned_hparams.json has no "
            f"values for run '{run}' ({sorted(tuned or {})}): run `kedro run --pipelines "
            "tuning` for it, or set training.hparams: config"
        )
    entry = tuned[run]
    return {
        "options": dict(entry.get("options") or {}),
        "train": dict(entry.get("train") or {}),
    }, "tuned"
