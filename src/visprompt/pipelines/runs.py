"""The list of training runs, read from `parameters_training.yml` when pipelines are created.

Kedro builds pipelines before it knows the run's parameters, so the run list (one namespace
per run) comes from the project's configuration files; each run's options, by contrast, are
node parameters (`params:training.runs.<run>`) and follow `--params` overrides at run time.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from kedro.framework.project import settings
from kedro.utils import find_kedro_project

from visprompt import methods
from visprompt.training import TrainConfig

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RUN_KEYS = {"method", "backbone", "options", "train", "prompt_init"}


@dataclass(frozen=True)
class RunSpec:
    """One training run: a method on a backbone with its options and training overrides."""

    name: str
    method: str
    backbone: str
    options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    prompt_init: str | None = None


def project_parameters(project_path: str | Path | None = None) -> dict[str, Any]:
    """The project's merged parameters (base + the `KEDRO_ENV` or default run environment)."""
    root = Path(project_path) if project_path else find_kedro_project(Path.cwd())
    if root is None:
        raise RuntimeError(
            f"no Kedro project found at or above {Path.cwd()}: run from the project folder"
        )
    loader = OmegaConfigLoader(
        conf_source=str(root / settings.CONF_SOURCE),
        env=os.environ.get("KEDRO_ENV"),
        **settings.CONFIG_LOADER_ARGS,
    )
    return dict(loader["parameters"])


def parse_run(name: str, entry: Mapping[str, Any]) -> RunSpec:
    """Check one `training.runs` entry; errors name the run, the field and the fix."""
    where = f"parameters_training.yml: training.runs.{name}"
    if not _NAME.match(name):
        raise ValueError(f"{where}: a run name must be an identifier (letters, digits, _)")
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be a mapping with method, backbone, options, train")
    unknown = sorted(set(entry) - _RUN_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_RUN_KEYS)}")
    for key in ("method", "backbone"):
        if not entry.get(key):
            raise ValueError(f"{where}: '{key}' is required")
    return RunSpec(
        name=name,
        method=str(entry["method"]),
        backbone=str(entry["backbone"]),
        options=dict(entry.get("options") or {}),
        train=dict(entry.get("train") or {}),
        prompt_init=entry.get("prompt_init"),
    )


def configured_runs(parameters: Mapping[str, Any] | None = None) -> dict[str, RunSpec]:
    """Runs of `training.runs` whose method is available, in configuration order.

    A run whose method is not registered (a method module not installed yet) is skipped
    with a warning naming it; a run on a backbone that `backbone.build` does not create is
    an error.
    """
    params = project_parameters() if parameters is None else parameters
    training = params.get("training") or {}
    backbones = set((params.get("backbone") or {}).get("build") or {})
    available = set(methods.available())
    runs: dict[str, RunSpec] = {}
    for name, entry in (training.get("runs") or {}).items():
        spec = parse_run(name, entry)
        if spec.method not in available:
            log.warning(
                "training run '%s' skipped: method '%s' is not available (available: %s)",
                name,
                spec.method,
                ", ".join(sorted(available)),
            )
            continue
        if spec.backbone not in backbones:
            raise ValueError(
                f"parameters_training.yml: training.runs.{name}.backbone is '{spec.backbone}', "
                f"but parameters_backbone.yml backbone.build defines {sorted(backbones)}"
            )
        runs[name] = spec
    return runs


def train_config(
    defaults: Mapping[str, Any], overrides: Mapping[str, Any], engine: Mapping[str, Any]
) -> TrainConfig:
    """The run's `TrainConfig`: training.defaults, then the engine, then the run's `train`.

    `engine` (training_engine: accelerator, devices, strategy, precision, num_workers) is a
    separate top-level key so that an environment such as `conf/gpu` can override it alone.
    """
    return TrainConfig.from_dict({**defaults, **engine, **overrides})


def bind_first(func: Callable[..., Any], value: Any) -> Callable[..., Any]:
    """`func` with its first argument fixed (a run name), still introspectable by Kedro.

    Kedro has no constant node inputs; a bare `functools.partial` loses the name, the type
    hints (Kedro's parameter validation warns on every run) and the signature's annotations.
    """
    bound = functools.partial(func, value)

    @functools.wraps(func)
    def node_func(*args: Any, **kwargs: Any) -> Any:
        return bound(*args, **kwargs)

    first = next(iter(inspect.signature(func).parameters))
    node_func.__signature__ = inspect.signature(bound)  # type: ignore[attr-defined]
    node_func.__annotations__ = {k: v for k, v in func.__annotations__.items() if k != first}
    return node_func
