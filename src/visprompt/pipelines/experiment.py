"""The experiment: the project's parameters under one name (`experiment` in parameters.yml),
the unit a user runs and compares. Its report nodes live in the Kedro namespace of its name,
so their outputs (`<name>.<dataset>`) are saved under data/08_reporting/<name>/.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from visprompt.data.sizes import ConfigError, data_image_size
from visprompt.training.runs import RunSpec

#: Pipelines holding the experiment's report nodes (`kedro run --namespaces` adds them).
REPORTING = {"__default__", "evaluation", "registry"}


def name(params: Mapping[str, Any]) -> str:
    """`experiment.name`, checked to be usable as a folder and dataset-name part."""
    value = str((params.get("experiment") or {}).get("name") or "")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        raise ConfigError(
            f"parameters.yml: experiment.name is {value!r}; use letters, digits, '_' or '-' "
            "(its reports go to data/08_reporting/<name>/)"
        )
    return value


def registered_model(params: Mapping[str, Any]) -> str:
    """`registry.model_name`, or by default the experiment's name: one model per experiment."""
    return str((params.get("registry") or {}).get("model_name") or name(params))


def names(value: Any) -> list[str] | None:
    """Names from YAML (a list) or `--params` (a string split at commas or spaces: `--params
    "experiment.runs=vp ap_vit"`, since Kedro splits `--params` at commas); None: every run."""
    if value is None:
        return None
    items = re.split(r"[,\s]+", value) if isinstance(value, str) else map(str, value)
    return [item for item in items if item]


def layout(
    params: Mapping[str, Any], runs: Mapping[str, RunSpec], key: str = "experiment.runs"
) -> list[tuple[str, int]]:
    """The (run, seed) pairs selected by `key` (runs or single seeds, `vp`, `vp.seed_1`, as
    `kedro run --namespaces` names them; null: every run), in configuration order."""
    section, field = key.split(".")
    wanted = names((params.get(section) or {}).get(field))
    every = [(run, seed) for run, spec in runs.items() for seed in spec.seeds]
    if wanted is None:
        return every
    chosen = set()
    for item in wanted:
        run, _, seed = item.partition(".seed_")
        pairs = {(r, s) for r, s in every if r == run and (not seed or str(s) == seed)}
        if not pairs:
            raise ConfigError(
                f"{key} names '{item}', which is not a run (or <run>.seed_<s>) of "
                f"training.runs; valid: {', '.join(runs)}"
            )
        chosen |= pairs
    return [pair for pair in every if pair in chosen]


def check(params: Mapping[str, Any], runs: Mapping[str, RunSpec]) -> None:
    """Refuse a bad experiment before any work: its name, data size and run selections."""
    if name(params) in runs:  # one Kedro namespace would hold a run and the reports
        raise ConfigError(f"parameters.yml: experiment.name '{name(params)}' is also a run name")
    data_image_size(params.get("data_ingestion") or {}, params.get("backbone") or {})
    layout(params, runs)
    layout(params, runs, "registry.runs")


def requested_pipelines(options: Mapping[str, Any]) -> list[str]:
    """The pipelines `kedro run` options name (`--pipelines`, `--pipeline`); [] for none."""
    return [*(options.get("pipelines") or []), *filter(None, [options.get("pipeline")])]


def with_reports(options: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """`kedro run` options in which `--namespaces a,b` also runs the experiment's reports on
    a and b: they become `experiment.runs` (unless given) and its namespace joins them."""
    namespaces = list(options.get("namespaces") or [])
    if not namespaces or not REPORTING & set(requested_pipelines(options) or ["__default__"]):
        return options
    runtime = dict(options.get("params") or {})
    if selected := [n for n in namespaces if n != name(params)]:
        runtime["experiment"] = {"runs": " ".join(selected)} | (runtime.get("experiment") or {})
    return options | {"params": runtime, "namespaces": sorted({*namespaces, name(params)})}
