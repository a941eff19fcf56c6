"""The user's configuration layers checked against the project's before Kedro reads them.

Kedro merges `conf/base`, the run environment (`conf/local`, or `--env`) and `--params`
without a schema: a misspelt key (`trainig.seeds=[0]`) is merged in, never read, and the run
exits 0 on the defaults. The schema here is `conf/base` itself: a key the user sets must exist
there, at the top level and inside the sections whose keys are fixed (`CLOSED`); sections
whose keys are the user's names (runs, backbones, sources) are checked by their own code. A
YAML syntax error is reported with its file and line (Kedro's loader names neither for some).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf._utils import get_yaml_loader

from visprompt.data.sizes import ConfigError

#: Paths (dotted; "" = the top level) whose keys must be keys of conf/base at the same path.
CLOSED = (
    "",
    "experiment",
    "training",
    "registry",
    "registry.smoke",
    "data_ingestion",
    "data_ingestion.split",
    "data_validation",
    "backbone",
)
_SUFFIXES = (".yml", ".yaml", ".json")
#: The top-level name a `${runtime_params:name.sub}` interpolation reads from `--params`.
_RUNTIME_PARAMS = re.compile(r"\$\{runtime_params:\s*([^.,}\s]+)")


def config_files(folder: Path) -> list[Path]:
    """The YAML/JSON files of one environment folder, hidden ones excluded."""
    if not folder.is_dir():
        return []
    return [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and path.suffix in _SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]


def parameter_files(folder: Path) -> list[Path]:
    """The files Kedro reads parameters from in one environment folder (its default
    patterns `parameters*`, `parameters*/**`, `**/parameters*`)."""
    return [
        path
        for path in config_files(folder)
        if path.name.startswith("parameters")
        or path.relative_to(folder).parts[0].startswith("parameters")
    ]


def shown(path: Path) -> str:
    """`path` relative to the working directory (the project) when inside it."""
    absolute = path.absolute()
    return str(absolute.relative_to(Path.cwd()) if absolute.is_relative_to(Path.cwd()) else path)


def read_config(path: Path) -> Any:
    """One configuration file as Kedro's loader (OmegaConf's YAML) reads it; a syntax error
    or a duplicate key is a `ConfigError` naming the file, the line and the fix."""
    try:
        data = yaml.load(path.read_text(), Loader=get_yaml_loader())  # noqa: S506 (OmegaConf's)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        context, started = getattr(error, "context", None), getattr(error, "context_mark", None)
        if context and started:
            context += f" that starts at line {started.line + 1}"
        raise ConfigError(
            f"{shown(path)}{at}: YAML syntax error: {problem}"
            + (f" ({context})" if context else "")
            + "; fix that line (`key: value`, nested keys indented by two spaces, lists as "
            "[a, b]) or move the file out of the conf folder"
        ) from None
    except OSError as error:
        raise ConfigError(f"{shown(path)}: cannot be read ({error}); fix its permissions") from None
    return data


def read_parameters(path: Path) -> dict[str, Any]:
    """One parameters file (`read_config`), which must map names to values."""
    data = read_config(path)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{shown(path)}: holds a {type(data).__name__}, not `key: value` pairs; parameters "
            "files map names to values (e.g. `training: {seeds: [0]}`)"
        )
    return dict(data)


def _unknown(
    user: Mapping[str, Any], base: Mapping[str, Any], path: str = ""
) -> Iterator[tuple[str, list[str]]]:
    """(dotted key, the valid keys beside it) for each key of `user` that `base` lacks at a
    closed path."""
    for key, value in user.items():
        dotted = f"{path}.{key}" if path else str(key)
        if path in CLOSED and key not in base:
            yield dotted, sorted(map(str, base))
        elif isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            yield from _unknown(value, base[key], dotted)


def check_keys(user: Mapping[str, Any], base: Mapping[str, Any], where: str) -> None:
    """Refuse the first key of `user` (a file's or `--params`' parameters) that conf/base does
    not have, naming the nearest valid one."""
    for dotted, valid in _unknown(user, base):
        parent, _, key = dotted.rpartition(".")
        near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        prefix = f"{parent}." if parent else ""
        fix = (
            f"did you mean '{prefix}{near[0]}'? Rename it"
            if near
            else f"valid keys{f' under {parent}' if parent else ''}: {', '.join(valid)}; rename it"
        )
        raise ConfigError(
            f"{where}: unknown parameter '{dotted}' ({fix}, or remove it). The project's "
            "parameters (conf/base) have no such key, so the run would ignore it."
        )


def check_layers(
    conf_source: Path, env: str | None, runtime_params: Mapping[str, Any] | None
) -> None:
    """Syntax of every file of conf/base and the run environment (catalog, mlflow.yml, ...
    too: the session would stop on them with a traceback), then every key the environment's
    parameters files and `--params` set, against conf/base."""
    resolved: set[str] = set()  # `--params` read by `${runtime_params:<name>}` in a file
    for folder in (conf_source / "base", conf_source / (env or "local")):
        for path in config_files(folder):
            read_config(path)
            resolved |= set(_RUNTIME_PARAMS.findall(path.read_text()))
    base: dict[str, Any] = {}
    for path in parameter_files(conf_source / "base"):
        base |= read_parameters(path)
    for path in parameter_files(conf_source / (env or "local")):
        check_keys(read_parameters(path), base, shown(path))
    params = {k: v for k, v in (runtime_params or {}).items() if k not in resolved}
    check_keys(params, base, "--params")
