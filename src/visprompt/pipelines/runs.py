"""The run list as the Kedro run sees it: parameters from the session's own config loader.

Kedro builds pipelines before nodes receive parameters, so the run list (one namespace per
run) must be known when pipelines are created. `RunListHook.after_context_created` hands the
context's parameters (with `--params`, `--env` and `--conf-source` applied) to
`use_parameters`, which validates every run list there (`training.runs` and the sweep
recipes' `<section>.runs`), before MLflow or any node starts; pipelines then read them through
`configured_runs` and `recipe_runs`, and nodes receive the parsed specs. The project's `kedro
run` checks them before that, before the session exists (`kedro_run.preflight`), with the same
function: `run_lists` validates a parameter set once and hands out its result after that, so
one `kedro run` validates once. Outside a session (a test calling
`create_pipeline`) the project's configuration is read with the project's loader settings.
The checks themselves live in the library (`visprompt.training.runs`).
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from kedro.framework.project import settings
from kedro.utils import find_kedro_project

from visprompt.training.runs import (
    ConfigError,
    RunSpec,
    parse_run,
    train_config,
    validate_runs,
)

#: The project's config loader arguments (settings.py uses them): defined here, not read from
#: Kedro's `settings`, so a loader built outside `kedro run` (the preflight, a test, a notebook,
#: where the project's settings are not configured) merges exactly as the session's does.
CONFIG_LOADER_ARGS: dict[str, Any] = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/local/parameters_training.yml may change one run's option, not replace `training`
    # An environment (conf/gpu) merges into base key by key: with Kedro's default
    # (destructive) merge, `kedro run --env gpu --params training...` (the hub recipes)
    # replaced the whole `training` block with the few keys a recipe overrides.
    # conf/<env>/mlflow.yml (e.g. conf/team) overrides single keys of conf/base/mlflow.yml too
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
}

__all__ = [
    "ConfigError",
    "RunSpec",
    "bind_first",
    "command_parameters",
    "configured_runs",
    "parse_run",
    "project_parameters",
    "recipe_runs",
    "run_lists",
    "seed_namespace",
    "train_config",
    "use_parameters",
]

#: Recipes with a run list of their own (`<section>.runs`, pipelines/sweeps.py).
SWEEP_SECTIONS = ("adavipro_report", "ap_layer_sweep")

#: The parameters of the current Kedro session (set by `use_parameters`), or None.
_SESSION_PARAMETERS: dict[str, Any] | None = None
#: The parameters pipelines were last created from (the session's or the project's), or None.
_CREATED_FROM: dict[str, Any] | None = None


def use_parameters(params: Mapping[str, Any]) -> bool:
    """Adopt the session's parameters for pipeline creation, validating the run list now.

    True when pipelines were already created from other parameters (an earlier session of
    this process, or the project's files read before this session started): they are stale.
    """
    global _SESSION_PARAMETERS
    run_lists(params)
    _SESSION_PARAMETERS = dict(params)
    return _CREATED_FROM is not None and _SESSION_PARAMETERS != _CREATED_FROM


def project_parameters(project_path: str | Path | None = None) -> dict[str, Any]:
    """The session's parameters, else the project's merged parameters read from disk.

    Reading from disk (no session: a test or a script calling `create_pipeline`) uses the
    project's `CONFIG_LOADER_ARGS` and `KEDRO_ENV`, as `kedro run` would.
    """
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
    """The parameters a `kedro run` with these options loads, read before its session starts.

    The loader is built as `KedroSession` builds it (the project's `OmegaConfigLoader` with
    `CONFIG_LOADER_ARGS`, `--env` or `KEDRO_ENV`, `--conf-source`, `--params`), so the project's
    `run` command can refuse a mistake before plugins' hooks, MLflow or pipeline creation.
    """
    root = Path(project_path) if project_path else find_kedro_project(Path.cwd())
    if root is None:
        raise ConfigError(
            f"no Kedro project found at or above {Path.cwd()}: run from the project folder"
        )
    loader = OmegaConfigLoader(
        conf_source=conf_source or str(root / settings.CONF_SOURCE),
        env=env or os.environ.get("KEDRO_ENV"),
        runtime_params=dict(runtime_params or {}),
        **CONFIG_LOADER_ARGS,
    )
    return dict(loader["parameters"])


#: section -> (the parameters it was last validated in, its validated runs).
_VALIDATED: dict[str, tuple[dict[str, Any], dict[str, RunSpec]]] = {}


def run_lists(params: Mapping[str, Any]) -> dict[str, dict[str, RunSpec]]:
    """Every run list of `params`, validated: {"training": ..., <sweep section>: ...}.

    Each list is validated once per parameter set: the preflight, the session's hook and
    every `create_pipeline` of one `kedro run` ask with equal parameters and get the same
    specs.
    """
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
