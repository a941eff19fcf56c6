"""The experiment: the unit a user runs and compares (`experiment` in parameters.yml).

An experiment is the project's parameters under one name: its data (`data_ingestion`), its
backbones (`backbone.build`, each input size stated once), its runs (`training.runs`, of which
`experiment.runs` selects the ones its reports cover), its seeds and its registered model.
Its report nodes (comparison, registry) live in the Kedro namespace of its name, so their
outputs are `<name>.<dataset>`, saved under `data/08_reporting/<name>/` (catalog factories):
two experiments never overwrite each other's reports or register into one model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from visprompt.training.runs import ConfigError, RunSpec, stated_image_size

#: Pipelines whose nodes live in the experiment's namespace (`kedro run --namespaces` adds it).
REPORTING = ("__default__", "evaluation", "registry")


def name(params: Mapping[str, Any]) -> str:
    """The experiment's name (`experiment.name`), checked to be a plain dataset-name part."""
    value = str((params.get("experiment") or {}).get("name") or "")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        raise ConfigError(
            f"parameters.yml: experiment.name is {value!r}; name the experiment with letters, "
            "digits, '_' or '-' (its reports go to data/08_reporting/<name>/)"
        )
    return value


def registered_model(params: Mapping[str, Any]) -> str:
    """`registry.model_name`, or by default the experiment's name: one model per experiment."""
    return str((params.get("registry") or {}).get("model_name") or name(params))


def names(value: Any) -> list[str] | None:
    """A list of names from YAML (a list) or `--params` (a string, comma- or space-separated:
    `--params "experiment.runs=vp ap_vit"`); None stays None (every run)."""
    if value is None:
        return None
    items = re.split(r"[,\s]+", value) if isinstance(value, str) else [str(v) for v in value]
    return [item for item in items if item]


def layout(
    params: Mapping[str, Any], runs: Mapping[str, RunSpec], key: str = "experiment.runs"
) -> list[tuple[str, int]]:
    """(run, seed) pairs the experiment's reports cover, in configuration order.

    `experiment.runs` (null: every run) names runs or single seeds (`vp`, `vp.seed_1`), as
    `kedro run --namespaces` does; `registry.runs` narrows the registry further (`key`).
    """
    section, field = key.split(".")
    wanted = names((params.get(section) or {}).get(field))
    if wanted is None:
        return [(run, seed) for run, spec in runs.items() for seed in spec.seeds]
    valid = {run: set(spec.seeds) for run, spec in runs.items()}
    chosen: set[tuple[str, int]] = set()
    for item in wanted:
        run, _, seed = item.partition(".seed_")
        seeds = {int(seed)} if seed.isdigit() else valid.get(run, set())
        if run not in valid or not seeds <= valid[run] or (seed and not seed.isdigit()):
            raise ConfigError(
                f"{key} names '{item}', which is not a run (or run.seed_<s>) of training.runs; "
                f"valid: {', '.join(runs)}"
            )
        chosen |= {(run, s) for s in seeds}
    return [(r, s) for r, spec in runs.items() for s in spec.seeds if (r, s) in chosen]


def data_image_size(data: Mapping[str, Any], backbone: Mapping[str, Any]) -> int:
    """The side the shards are stored at: `data_ingestion.image_size`, or (null) the largest
    input size among the experiment's backbones, so no backbone sees upsampled shards.

    An explicit size must be the input size of one of those backbones: a size none of them
    takes would be resized away on the device (a 128 px setting silently trained at 64 px).
    """
    sizes = {
        key: size
        for key in backbone.get("build") or {}
        if (size := stated_image_size(backbone, key)) is not None
    }
    given = data.get("image_size")
    stated = ", ".join(f"{key}: {size} px" for key, size in sizes.items())
    if given is None:
        if not sizes:
            raise ConfigError(
                "parameters_data_ingestion.yml: data_ingestion.image_size is null, but no "
                "backbone states its input size: set backbone.models.<model>.image_size "
                "(parameters_backbone.yml) or data_ingestion.image_size"
            )
        return max(sizes.values())
    if sizes and int(given) not in sizes.values():
        models = backbone.get("build") or {}
        key = max(sizes, key=lambda k: sizes[k])
        raise ConfigError(
            f"parameters_data_ingestion.yml: data_ingestion.image_size is {given}, but no "
            f"backbone of this experiment takes {given} px inputs ({stated}): the shards would "
            f"be resized to those sizes on the device. Fix: state the input size once where "
            f"the backbone is, e.g. backbone.models.{models[key]}.image_size: {given} "
            "(parameters_backbone.yml), and set data_ingestion.image_size: null to store the "
            "shards at the largest backbone size"
        )
    return int(given)


def check(params: Mapping[str, Any], runs: Mapping[str, RunSpec]) -> None:
    """Refuse a bad experiment before any work: its name, data size and run selections."""
    name(params)
    data_image_size(params.get("data_ingestion") or {}, params.get("backbone") or {})
    layout(params, runs)
    layout(params, runs, "registry.runs")


def with_reports(options: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """`kedro run` options where `--namespaces a,b` also runs the experiment's reports on a, b.

    The selected runs become `experiment.runs` (unless given) and the experiment's namespace
    joins the requested ones when the requested pipelines hold report nodes.
    """
    namespaces = list(options.get("namespaces") or [])
    requested = [*(options.get("pipelines") or []), *filter(None, [options.get("pipeline")])]
    if not namespaces or not set(REPORTING) & set(requested or ["__default__"]):
        return options
    runtime = dict(options.get("params") or {})
    selected = [n for n in namespaces if n != name(params)]
    if selected:
        section = dict(runtime.get("experiment") or {})
        section.setdefault("runs", " ".join(selected))
        runtime["experiment"] = section
    return options | {"params": runtime, "namespaces": sorted({*namespaces, name(params)})}
