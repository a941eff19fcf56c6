"""The suite's declaration, a recipe (pipelines/suite*.yml, a `kedro run --config` file),
checked before any work, and the parameters one task's `kedro run` receives.

The recipe's `run.params` hold the parameters every task shares (backbones, training
defaults, the engine, the data's stored size: the project's keys, so `kedro run` and the
recipe tests read them as usual) and `suite`: tasks, runs, seeds, protocol, tuning budget.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from visprompt.training.runs import ConfigError

#: Keys of one task (`suite.tasks.<name>`).
TASK_KEYS = ("source", "options", "test", "exclude_backbones", "install")
#: Keys of the declaration (`suite`).
SUITE_KEYS = ("name", "workspace", "seeds", "protocol", "tuning", "tasks", "runs", "baselines")
#: Top-level parameters a task sets itself (the recipe's own are for its report run).
OWN_KEYS = ("experiment", "suite")
#: The pipelines one task runs, in one `kedro run`: data, backbones, SPT inits, the
#: equal-budget search on val, then every seed with the tuned values, then test metrics.
TASK_PIPELINES = (
    "data_ingestion",
    "data_validation",
    "backbone",
    "prompt_init",
    "tuning",
    "training",
    "evaluation",
)


@dataclass(frozen=True)
class Task:
    """One task: a source under the protocol, the runs it trains, how to install its data."""

    name: str
    source: str
    options: dict[str, Any]
    test: int | None
    runs: dict[str, Any]
    excluded: dict[str, str] = field(default_factory=dict)  # run -> why it is not trained
    install: str | None = None

    def replaced(self, tuning: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
        """(section, key) -> value of the project's run lists that the task replaces (a
        runtime parameter can add entries to them but not remove the project's own)."""
        spaces = tuning.get("run_spaces") or {}
        return {
            ("training", "runs"): self.runs,
            ("tuning", "run_spaces"): {r: s for r, s in spaces.items() if r in self.runs},
        }


@dataclass(frozen=True)
class Suite:
    """The parsed `suite` block with the recipe's shared parameters and environment."""

    name: str
    workspace: str
    raw: dict[str, Any]
    tasks: dict[str, Task]
    shared: dict[str, Any] = field(default_factory=dict)
    env: str | None = None

    def only(self, runs: Sequence[str]) -> Suite:
        """The suite with each task's runs cut to `runs` (a share of the work: the others
        keep their results, which a later run of every run reuses)."""
        unknown = sorted(set(runs) - set(self.raw["runs"]))
        if unknown:
            raise ConfigError(
                f"--runs names {unknown}; the suite's runs: {', '.join(self.raw['runs'])}"
            )
        tasks = {
            name: dataclasses.replace(task, runs={r: v for r, v in task.runs.items() if r in runs})
            for name, task in self.tasks.items()
        }
        return dataclasses.replace(self, tasks=tasks)

    def task_parameters(self, task: str) -> dict[str, Any]:
        """The runtime parameters of task `task`'s `kedro run` (its experiment): the shared
        parameters, the task's data under the protocol, the suite's seeds and budget."""
        spec, raw = self.tasks[task], self.raw
        protocol = dict(raw.get("protocol") or {})
        source = {"source": spec.source, "options": spec.options, "test": spec.test, **protocol}
        tuning = {"runs": None, "study_prefix": f"{self.name}.{task}"} | dict(raw["tuning"])
        tuning.pop("run_spaces", None)  # per task, in the workspace's parameters_tuning.yml
        own = {
            "experiment": {"name": task, "runs": None},
            "data_ingestion": {"source": "vtab1k", "sources": {"vtab1k": source}},
            "training": {"seeds": list(raw["seeds"]), "hparams": "tuned"},
            "tuning": tuning,
        }
        return merged(self.shared, own)


def merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` merged into a copy of `base`, nested mappings key by key."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {value!r}")
    return dict(value)


def parse(block: Any, where: str = "suite", shared: Mapping[str, Any] | None = None,
          env: str | None = None) -> Suite:  # fmt: skip
    """Check the `suite` block (keys, tasks, runs, seeds, budget) and parse it."""
    raw = _mapping(block, where)
    unknown = sorted(set(raw) - set(SUITE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(SUITE_KEYS)}")
    for key in ("name", "workspace", "seeds", "tuning", "tasks", "runs"):
        if not raw.get(key):
            raise ConfigError(f"{where}.{key} is required (docs/suite.md shows a declaration)")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}.seeds is {seeds!r}: give distinct seeds, e.g. [0, 1, 2]")
    tuning = _mapping(raw["tuning"], f"{where}.tuning")
    if not isinstance(tuning.get("trials"), int) or tuning["trials"] < 1:
        raise ConfigError(
            f"{where}.tuning.trials is {tuning.get('trials')!r}: the equal budget, trials per "
            "run and task (an integer >= 1)"
        )
    runs = _mapping(raw["runs"], f"{where}.runs")
    tasks = {}
    for name, entry in _mapping(raw["tasks"], f"{where}.tasks").items():
        at = f"{where}.tasks.{name}"
        entry = _mapping(entry, at)
        unknown = sorted(set(entry) - set(TASK_KEYS))
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {unknown}; valid: {', '.join(TASK_KEYS)}")
        if not entry.get("source") or entry["source"] == "vtab1k":
            raise ConfigError(f"{at}.source: name the task's data source (e.g. digits, idx)")
        excluded_backbones = set(entry.get("exclude_backbones") or [])
        excluded = {
            run: f"backbone '{r['backbone']}' excluded on {name} (exclude_backbones)"
            for run, r in runs.items()
            if _mapping(r, f"{where}.runs.{run}").get("backbone") in excluded_backbones
        }
        tasks[name] = Task(
            name=name,
            source=str(entry["source"]),
            options=dict(entry.get("options") or {}),
            test=entry.get("test"),
            runs={run: r for run, r in runs.items() if run not in excluded},
            excluded=excluded,
            install=entry.get("install"),
        )
    shared = {k: v for k, v in (shared or {}).items() if k not in OWN_KEYS}
    return Suite(str(raw["name"]), str(raw["workspace"]), raw, tasks, shared, env)


def load_recipe(path: Path) -> Suite:
    """The suite a recipe declares (`run.params.suite`), with its shared `run.params`."""
    if not path.is_file():
        raise ConfigError(f"suite recipe {path} not found (e.g. pipelines/suite.yml)")
    run = (yaml.safe_load(path.read_text()) or {}).get("run") or {}
    params = run.get("params") or {}
    return parse(params.get("suite"), f"{path}: run.params.suite", params, run.get("env"))
