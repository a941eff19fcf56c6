"""Kedro's `run` (overridden in `visprompt.cli`) answering configuration mistakes in one
paragraph naming the valid choices (exit 1) before the session starts; Ctrl-C closes the open
MLflow runs as KILLED and exits 130.
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
    """Check the run list and the namespaces of a `kedro run` before the session, whose hooks
    and pipelines take ~15 s of CPU to load; the session reuses this validation."""
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
