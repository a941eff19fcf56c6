"""`kedro run` with one-paragraph answers to configuration mistakes instead of tracebacks.

The project's `cli` group (imported by Kedro from `visprompt.cli`) overrides Kedro's `run`
with this command: the same options and the same run, but an unknown pipeline name, a run-list
mistake or an unknown namespace is refused before the session starts, with a message naming
the valid choices, exit code 1. Ctrl-C closes the MLflow runs left open as KILLED and exits 130.
"""

from __future__ import annotations

import gc
import importlib.resources
from typing import Any

import click
import mlflow
from kedro.framework.cli.project import run as kedro_run

from visprompt.pipelines import experiment
from visprompt.pipelines.runs import command_parameters, configured_runs
from visprompt.training.runs import ConfigError

_NAMESPACE_ERROR = "Pipeline does not contain nodes with the following namespaces"


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
    """Check the run list and the namespaces of a `kedro run` with these options, at once.

    Before the session: its hooks (kedro-mlflow's) and the pipelines (torch, timm, Great
    Expectations) take ~15 s of CPU on 2 cores to load, and a typo needs none of them. The
    session's hook (`RunListHook`) and the pipelines reuse this validation (`runs.run_lists`,
    once per parameter set); a namespace that names a run but no node of the requested
    pipelines is refused by Kedro after loading.
    """
    params = command_parameters(
        options.get("env"), options.get("conf_source"), options.get("params")
    )
    runs = configured_runs(params)
    experiment.check(params, runs)
    valid = {*runs, experiment.name(params)}  # the runs and the experiment's reports
    unknown = [n for n in options.get("namespaces") or [] if n.split(".")[0] not in valid]
    if unknown:
        raise click.ClickException(
            f"unknown namespace(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )
    return params


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
    """End every MLflow run this process still has open as KILLED; their ids, innermost first.

    Ctrl-C is not an `Exception`, so Kedro's `on_pipeline_error` (where kedro-mlflow marks a
    run FAILED) never runs, and MLflow's exit handler would mark the runs FINISHED.
    """
    closed = []
    while (active := mlflow.active_run()) is not None:
        if active.info.run_id not in closed:
            closed.append(active.info.run_id)
        mlflow.end_run(status="KILLED")
    return closed


def _run(**kwargs: Any) -> Any:
    requested = list(kwargs.get("pipelines") or []) + (
        [kwargs["pipeline"]] if kwargs.get("pipeline") else []
    )
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
    """Let the process end without a last garbage collection of the whole heap.

    At exit the interpreter collects every object of the run (torch, MLflow, Great
    Expectations): 20 s to minutes on a busy 2-core machine, after Ctrl-C too. Frozen objects
    are not scanned; atexit handlers (MLflow's, logging's flush) still run.
    """
    gc.freeze()


run = click.Command(
    name="run",
    params=kedro_run.params,
    callback=_run,
    help=kedro_run.help,
    short_help=kedro_run.short_help,
)
