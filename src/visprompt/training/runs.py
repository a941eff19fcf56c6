"""The run list (`training.runs`), checked as a whole before anything starts.

A run is a method on a backbone with the method's build options and overrides of the training
defaults. `validate_runs` checks every run against what exists (methods and their configs,
backbones, prompt inits, `TrainConfig` fields and types) and raises one
`ConfigError` whose message names the run, the field, the bad value and the valid choices,
so a typo costs a second, not a traceback after minutes of earlier stages.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from visprompt import methods
from visprompt.data.sizes import ConfigError, stated_image_size
from visprompt.training.config import OptionError, TrainConfig

TRAINING_FILE = "parameters_training.yml"
BACKBONE_FILE = "parameters_backbone.yml"
PROMPT_INIT_FILE = "parameters_prompt_init.yml"

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RUN_KEYS = ("method", "backbone", "options", "train", "prompt_init", "seeds")


@dataclass(frozen=True)
class RunSpec:
    """One training run: a method on a backbone with its options and training overrides."""

    name: str
    method: str
    backbone: str
    options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    prompt_init: str | None = None
    seeds: tuple[int, ...] = (0,)
    #: the input side parameters_backbone.yml states for its backbone (None: timm's default);
    #: the built backbone must agree (a stale `backbone_specs` is refused, not used)
    image_size: int | None = None


def _where(name: str, *fields: str, section: str = "training") -> str:
    path = ".".join((section, "runs", name, *fields))
    return f"{section} run '{name}' (parameters_{section}.yml: {path})"


def parse_seeds(seeds: Any, where: str) -> tuple[int, ...]:
    """A non-empty list of distinct integer seeds; the error names `where` and the fix."""
    if (
        not isinstance(seeds, list | tuple)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ConfigError(
            f"{where} is {seeds!r}: give a non-empty list of distinct integers >= 0, e.g. [0, 1, 2]"
        )
    return tuple(seeds)


def parse_run(
    name: str,
    entry: Mapping[str, Any],
    default_seeds: Sequence[int] = (0,),
    section: str = "training",
) -> RunSpec:
    """Check the shape of one `<section>.runs` entry (keys, required fields).

    The run trains once per seed: its own `seeds`, else `default_seeds` (`training.seeds`).
    """
    at = functools.partial(_where, section=section)
    where = at(name)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: a run name must be an identifier (letters, digits, _)")
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(_RUN_KEYS)}")
    unknown = sorted(set(entry) - set(_RUN_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(_RUN_KEYS)}")
    for key in ("method", "backbone"):
        if not entry.get(key):
            raise ConfigError(f"{where}: '{key}' is required")
    for key in ("options", "train"):
        if entry.get(key) is not None and not isinstance(entry[key], Mapping):
            raise ConfigError(f"{at(name, key)} must be a mapping, got {entry[key]!r}")
    if "seed" in (entry.get("train") or {}):
        raise ConfigError(f"{at(name, 'train')}: 'seed' is set per run by `seeds: [...]`")
    return RunSpec(
        name=name,
        method=str(entry["method"]),
        backbone=str(entry["backbone"]),
        options=dict(entry.get("options") or {}),
        train=dict(entry.get("train") or {}),
        prompt_init=entry.get("prompt_init"),
        seeds=parse_seeds(entry.get("seeds", list(default_seeds)), at(name, "seeds")),
    )


def check_options(spec: RunSpec, where: str | None = None) -> None:
    """The run's options build its method's config (known keys, types, ranges; no torch).

    `where` names the file and key of the options (default: `training.runs.<name>.options`
    in parameters_training.yml; a sweep recipe names its own).
    """
    try:
        methods.parse_options(methods.config_class(spec.method), spec.options)
    except methods.OptionError as error:
        raise ConfigError(f"{where or _where(spec.name, 'options')}: {error}") from None


def check_image_size(spec: RunSpec, backbone_params: Mapping[str, Any]) -> None:
    """A run's `image_size` option, when given, must be the size its backbone is stated at:
    the data path resizes to the backbone's size, and vp/ap/adavipro derive it from there."""
    given = spec.options.get("image_size")
    stated = stated_image_size(backbone_params, spec.backbone)
    if given is not None and stated is not None and int(given) != stated:
        raise ConfigError(
            f"{_where(spec.name, 'options', 'image_size')} is {given}, but backbone "
            f"'{spec.backbone}' is stated at {stated} px in {BACKBONE_FILE}: drop the option "
            "(methods take the size from the backbone) or change the backbone's image_size"
        )


def train_config(
    defaults: Mapping[str, Any],
    overrides: Mapping[str, Any],
    engine: Mapping[str, Any],
    run: str = "?",
    section: str = "training",
) -> TrainConfig:
    """The run's `TrainConfig`: training.defaults, then the engine, then the run's `train`.

    `engine` (training_engine: accelerator, devices, strategy, precision, num_workers) is a
    separate top-level key so that an environment such as `conf/gpu` can override it alone.
    Errors name the key where the bad value was set.
    """
    sources = (
        (f"{TRAINING_FILE}: training.defaults", defaults),
        ("training_engine", engine),
        (f"parameters_{section}.yml: {section}.runs.{run}.train", overrides),
    )
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for where, values in sources:
        merged |= values
        origin |= dict.fromkeys(values, where)
    try:  # TrainConfig checks keys, types and ranges (once); the error gains where it was set
        return TrainConfig.from_dict(merged)
    except OptionError as error:
        where = f" ({origin[error.field]}.{error.field})" if error.field in origin else ""
        raise ConfigError(f"{section} run '{run}'{where}: {error}") from None


def validate_runs(params: Mapping[str, Any], section: str = "training") -> dict[str, RunSpec]:
    """Every run of `<section>.runs` (`training.runs`, or a sweep recipe's own list), checked
    against methods, backbones, inits and TrainConfig, in configuration order.

    `params` are the project's merged parameters. Raises `ConfigError` at the first mistake.
    A recipe's run without its own `seeds` trains `<section>.seeds` (seed 0 when not set). A
    recipe may train a backbone only its own `kedro run` builds (the AP layer sweep's ResNet:
    `--params backbone.build...`), so an unbuilt backbone is left to that run.
    """
    training = params.get("training")
    if section == "training" and (not isinstance(training, Mapping) or not training.get("runs")):
        raise ConfigError(
            f"no training runs: the parameters have no 'training.runs' (is conf/base/"
            f"{TRAINING_FILE} missing or empty? see the project's conf/base/{TRAINING_FILE})"
        )
    backbones = (params.get("backbone") or {}).get("build") or {}
    if not backbones and section == "training":
        raise ConfigError(
            f"no backbones: the parameters have no 'backbone.build' (is conf/base/"
            f"{BACKBONE_FILE} missing or empty?)"
        )
    inits = set(((params.get("prompt_init") or {}).get("inits")) or {})
    defaults = (params.get("training") or {}).get("defaults") or {}
    if "seed" in defaults:
        raise ConfigError(
            f"{TRAINING_FILE}: training.defaults.seed is replaced by training.seeds (a list, "
            "e.g. [0, 1, 2]); move it there"
        )
    block = params.get(section) or {}
    file = f"parameters_{section}.yml"
    seeds = parse_seeds(block.get("seeds", [0]), f"{file}: {section}.seeds")
    engine = params.get("training_engine") or {}
    names = methods.available()
    runs: dict[str, RunSpec] = {}
    for name, entry in (block.get("runs") or {}).items():
        spec = parse_run(name, entry, seeds, section)
        at = functools.partial(_where, spec.name, section=section)
        if spec.method not in names:
            raise ConfigError(
                f"{at('method')}: unknown method '{spec.method}'; valid: {', '.join(names)}"
            )
        if spec.backbone not in backbones and section == "training":
            raise ConfigError(
                f"{at('backbone')}: unknown backbone '{spec.backbone}'; valid: "
                f"{', '.join(backbones)} (the keys of backbone.build in {BACKBONE_FILE})"
            )
        if spec.prompt_init is not None and spec.prompt_init not in inits:
            raise ConfigError(
                f"{at('prompt_init')}: unknown prompt init '{spec.prompt_init}'; "
                f"valid: {', '.join(sorted(inits)) or 'none'} (prompt_init.inits in "
                f"{PROMPT_INIT_FILE})"
            )
        check_options(spec, at("options"))
        check_image_size(spec, params.get("backbone") or {})
        train_config(defaults, spec.train, engine, name, section)
        stated = stated_image_size(params.get("backbone") or {}, spec.backbone)
        runs[name] = dataclasses.replace(spec, image_size=stated)
    return runs
