"""Kedro's `run` (overridden in `visprompt.cli`) answering configuration mistakes in one
paragraph naming the valid choices (exit 1) before the session starts; Ctrl-C closes the open
MLflow runs as KILLED and exits 130.
"""

from __future__ import annotations

import gc
import importlib.resources
import os
from typing import Any

import click
import mlflow
from kedro.framework.cli.project import run as kedro_run

from visprompt.data.sources import imagefolder
from visprompt.pipelines import config_check, experiment
from visprompt.pipelines.runs import command_parameters, conf_folder, configured_runs, run_lists
from visprompt.training.runs import ConfigError

_NAMESPACE_ERROR = "Pipeline does not contain nodes with the following namespaces"

#: Pipelines that ingest data, and those that train `training.runs` (a sweep recipe's
#: pipeline trains its own run list, `<section>.runs`).
INGESTING = {"__default__", "data_ingestion"}
TRAINING = {"__default__", "training", "tuning"}


def pipeline_names() -> list[str]:
    """Names `kedro run --pipelines` accepts: every pipelines/<name>/pipeline.py, __default__."""
    package = importlib.resources.files("visprompt.pipelines")
    folders = (p.name for p in package.iterdir() if (p / "pipeline.py").is_file())
    return ["__default__", *sorted(folders)]


def check_pipelines(requested: list[str]) -> None:
    """Refuse unknown pipeline names, listing the valid ones."""
    valid = pipeline_names()
    unknown = [name for name in requested if name not in valid]
    if unknown:
        raise click.ClickException(
            f"unknown pipeline(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
        )


def preflight(options: dict[str, Any]) -> dict[str, Any]:
    """Check a `kedro run` before the session, whose hooks and pipelines take ~15 s of CPU to
    load: the configuration files and keys, the run lists and namespaces, the data folder
    when ingestion runs, and each method built on a stand-in of its backbone when training
    runs. The session reuses the run-list validation."""
    env = options.get("env") or os.environ.get("KEDRO_ENV")
    conf = conf_folder(options.get("conf_source"))
    config_check.check_layers(conf, env, options.get("params"))
    params = command_parameters(env, options.get("conf_source"), options.get("params"))
    runs = configured_runs(params)
    experiment.check(params, runs)
    valid = {*runs, experiment.name(params)}  # the runs and the experiment's reports
    namespaces = options.get("namespaces") or []
    unknown = [n for n in namespaces if n.split(".")[0] not in valid]
    if unknown:
        raise click.ClickException(
            f"unknown namespace(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )
    requested = set(experiment.requested_pipelines(options) or ["__default__"])
    if not namespaces and requested & INGESTING:  # ingestion has no namespace
        check_data(params)
    chosen = {n.split(".")[0] for n in namespaces}
    for section, specs in run_lists(params).items():
        if section in requested or (section == "training" and requested & TRAINING):
            from visprompt.training.build_check import check_builds  # torch: runs train

            selected = {k: v for k, v in specs.items() if not chosen or k in chosen}
            check_builds(selected, params.get("backbone") or {}, section)
    return params


def check_data(params: dict[str, Any]) -> None:
    """The configured image folder exists, can be listed and holds enough class folders
    (data_validation.min_classes): answered from folder names before any image is read."""
    ingestion = params.get("data_ingestion") or {}
    if ingestion.get("source") != "imagefolder":
        return
    options = (ingestion.get("sources") or {}).get("imagefolder") or {}
    minimum = int((params.get("data_validation") or {}).get("min_classes", 2))
    try:
        imagefolder.check_classes(options.get("root", ""), options.get("classes"), minimum)
    except (OSError, ValueError) as error:
        raise ConfigError(str(error)) from None


def _namespaces(requested: list[str]) -> list[str]:
    """Top-level namespaces of the requested (already built) pipelines."""
    from kedro.framework.project import pipelines

    found = set()
    for name in requested or ["__default__"]:
        for node in pipelines[name].nodes:
            if node.namespace:
                found.add(node.namespace.split(".")[0])
    return sorted(found)


def _config_error(error: BaseException) -> ConfigError | None:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ConfigError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def close_interrupted_runs() -> list[str]:
    """End every MLflow run this process has open as KILLED; their ids, innermost first.
    (On Ctrl-C kedro-mlflow's error hook never runs; MLflow's exit handler would say FINISHED.)
    """
    closed = []
    while (active := mlflow.active_run()) is not None:
        if active.info.run_id not in closed:
            closed.append(active.info.run_id)
        mlflow.end_run(status="KILLED")
    return closed


def _run(**kwargs: Any) -> Any:
    requested = experiment.requested_pipelines(kwargs)
    check_pipelines(requested)
    try:
        kwargs = experiment.with_reports(kwargs, preflight(kwargs))
        result = kedro_run.callback(**kwargs)
    except KeyboardInterrupt:
        closed = close_interrupted_runs()
        click.echo(f"interrupted: {len(closed)} MLflow run(s) closed as KILLED", err=True)
        _exit_without_collection()
        raise SystemExit(130) from None
    except Exception as error:
        config_error = _config_error(error)
        if config_error is not None:
            raise click.ClickException(str(config_error)) from None
        if isinstance(error, ValueError) and str(error).startswith(_NAMESPACE_ERROR):
            raise click.ClickException(
                f"unknown namespace(s) {', '.join(kwargs['namespaces'])}; valid: "
                f"{', '.join(_namespaces(requested))}"
            ) from None
        raise
    _exit_without_collection()
    return result


def _exit_without_collection() -> None:
    """Skip the interpreter's last collection of the whole heap (20 s or more on a busy
    machine): frozen objects are not scanned; atexit handlers still run."""
    gc.freeze()


run = click.Command(
    name="run",
    params=kedro_run.params,
    callback=_run,
    help=kedro_run.help,
    short_help=kedro_run.short_help,
)
