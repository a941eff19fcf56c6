"""The run list as the Kedro run sees it: parameters from the session's own config loader.

Kedro builds pipelines before nodes receive parameters, so the run lists must be known then.
`RunListHook` hands the session's parameters (with `--params`, `--env`, `--conf-source`) to
`use_parameters`; the project's `kedro run` validates them earlier with the same function
(`kedro_run.preflight`), and `run_lists` validates a parameter set only once. Outside a
session (a test calling `create_pipeline`) the project's configuration is read from disk.
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from kedro.config import OmegaConfigLoader
from kedro.framework.project import settings
from kedro.utils import find_kedro_project
from omegaconf.errors import OmegaConfBaseException

from visprompt.training.runs import ConfigError, RunSpec, validate_runs

#: The project's config loader arguments (settings.py uses them), here so a loader built
#: outside `kedro run` (the preflight, a test) merges exactly as the session's does.
CONFIG_LOADER_ARGS: dict[str, Any] = {
    "base_env": "base",
    "default_run_env": "local",
    # an environment (conf/local, conf/gpu, conf/team) overrides single keys of base; Kedro's
    # default (destructive) merge replaced the whole `training` block with a recipe's few keys
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
}

#: Recipes with a run list of their own (`<section>.runs`, pipelines/sweeps.py).
SWEEP_SECTIONS = ("adavipro_report", "ap_layer_sweep")

#: The parameters of the current Kedro session (set by `use_parameters`), or None.
_SESSION_PARAMETERS: dict[str, Any] | None = None
#: The parameters pipelines were last created from (the session's or the project's), or None.
_CREATED_FROM: dict[str, Any] | None = None


def use_parameters(params: Mapping[str, Any]) -> bool:
    """Adopt the session's parameters for pipeline creation, validating the run list now.

    True when pipelines were already created from other parameters: they are stale.
    """
    global _SESSION_PARAMETERS
    run_lists(params)
    _SESSION_PARAMETERS = dict(params)
    return _CREATED_FROM is not None and _SESSION_PARAMETERS != _CREATED_FROM


def project_parameters(project_path: str | Path | None = None) -> dict[str, Any]:
    """The session's parameters, else the project's read from disk as `kedro run` would."""
    global _CREATED_FROM
    if _SESSION_PARAMETERS is not None and project_path is None:
        _CREATED_FROM = _SESSION_PARAMETERS
        return _SESSION_PARAMETERS
    params = command_parameters(project_path=project_path)
    if project_path is None:
        _CREATED_FROM = params
    return params


def command_parameters(
    env: str | None = None,
    conf_source: str | None = None,
    runtime_params: Mapping[str, Any] | None = None,
    project_path: str | Path | None = None,
) -> dict[str, Any]:
    """The parameters a `kedro run` with these options loads, read as `KedroSession` reads
    them, so a mistake is refused before plugins' hooks, MLflow or pipeline creation."""
    conf = conf_folder(conf_source, project_path)
    loader = OmegaConfigLoader(
        conf_source=str(conf),
        env=env or os.environ.get("KEDRO_ENV"),
        runtime_params=dict(runtime_params or {}),
        **CONFIG_LOADER_ARGS,
    )
    try:
        return dict(loader["parameters"])
    except (yaml.YAMLError, ValueError, OmegaConfBaseException) as error:
        # a syntax error is named with its line by config_check first; what is left here is
        # Kedro's own refusal (a key set in two files of one environment, an interpolation)
        raise ConfigError(
            f"Kedro cannot merge the parameters under {conf}: {type(error).__name__}: "
            f"{error}. Fix the file and key it names (a top-level key may be set in one file "
            "per environment)"
        ) from None


def conf_folder(conf_source: str | None = None, project_path: str | Path | None = None) -> Path:
    """The configuration folder a `kedro run` with `--conf-source` reads (default: the
    project's conf/)."""
    if conf_source:
        return Path(conf_source)
    root = Path(project_path) if project_path else find_kedro_project(Path.cwd())
    if root is None:
        raise ConfigError(
            f"no Kedro project found at or above {Path.cwd()}: run from the project folder"
        )
    return root / settings.CONF_SOURCE


#: section -> (the parameters it was last validated in, its validated runs).
_VALIDATED: dict[str, tuple[dict[str, Any], dict[str, RunSpec]]] = {}


def run_lists(params: Mapping[str, Any]) -> dict[str, dict[str, RunSpec]]:
    """Every run list of `params`, validated once per parameter set: {"training": ...,
    <sweep section>: ...}."""
    sections = ["training", *(s for s in SWEEP_SECTIONS if s in params)]
    return {section: _section_runs(params, section) for section in sections}


def _section_runs(params: Mapping[str, Any], section: str) -> dict[str, RunSpec]:
    cached = _VALIDATED.get(section)
    if cached is None or cached[0] != params:
        runs = validate_runs(params, section)
        cached = _VALIDATED[section] = (copy.deepcopy(dict(params)), runs)
    return cached[1]


def configured_runs(parameters: Mapping[str, Any] | None = None) -> dict[str, RunSpec]:
    """Every run of `training.runs`, validated, in configuration order."""
    return run_lists(project_parameters() if parameters is None else parameters)["training"]


def recipe_runs(section: str, params: Mapping[str, Any] | None = None) -> dict[str, RunSpec]:
    """A sweep recipe's `<section>.runs`, validated with the others, in configuration order."""
    return _section_runs(project_parameters() if params is None else params, section)


def seed_namespace(run: str, seed: int) -> str:
    """`<run>.seed_<seed>`: the Kedro namespace of one seed of a run (inside the run's)."""
    return f"{run}.seed_{seed}"


def seed_datasets(pairs: Iterable[tuple[str, int]], *names: str) -> list[str]:
    """`<run>.seed_<s>.<name>` for each (run, seed) and each name, in that order."""
    return [f"{seed_namespace(run, seed)}.{name}" for run, seed in pairs for name in names]


def bind_first(func: Callable[..., Any], value: Any) -> Callable[..., Any]:
    """`func` with its first argument fixed, keeping the name, signature and type hints a
    bare `functools.partial` loses (Kedro has no constant node inputs)."""
    bound = functools.partial(func, value)

    @functools.wraps(func)
    def node_func(*args: Any, **kwargs: Any) -> Any:
        return bound(*args, **kwargs)

    first = next(iter(inspect.signature(func).parameters))
    node_func.__signature__ = inspect.signature(bound)  # type: ignore[attr-defined]
    node_func.__annotations__ = {k: v for k, v in func.__annotations__.items() if k != first}
    return node_func
