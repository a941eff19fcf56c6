"""The MLflow calls of hooks and nodes beside kedro-mlflow's catalog datasets, so node modules
import no mlflow: nested runs under kedro-mlflow's run (one per trained seed, reopened by id
to add results), flat params, history. A nested run carries the key of its inputs (`KEY_TAG`),
so a later `kedro run` reusing the result finds it (`finished_run`) instead of a duplicate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

#: Tag naming the inputs of a nested run's result (a training checkpoint key, a backbone's
#: weights checksum ...): equal keys mean the same result.
KEY_TAG = "visprompt.key"

#: MLflow caps a param value at 6000 characters (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH).
_MAX_PARAM = 6000


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}; lists and None become JSON text."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat |= flatten(value, f"{name}.")
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            flat[name] = text[:_MAX_PARAM]
    return flat


@contextmanager
def nested_run(
    name: str, *, run_id: str | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """A child run of the active run (kedro-mlflow's), or `run_id` reopened when this store
    has it (the evaluation adds test metrics to the seed's training run, even later)."""
    run, status = None, "KILLED"
    if run_id is not None:
        try:
            status = mlflow.get_run(run_id).info.status
            run = mlflow.start_run(run_id=run_id, nested=True, tags=dict(tags or {}))
        except MlflowException:
            run, status = None, "KILLED"
    if run is None:
        run = mlflow.start_run(run_name=name, nested=True, tags=dict(tags or {}))
    with run:
        try:
            yield run
        except KeyboardInterrupt:
            # Ctrl-C: a run started here was killed; a reopened one keeps its own status
            mlflow.end_run(status)
            raise


def finished_run(key: str) -> str | None:
    """The id of a FINISHED run of the current experiment tagged `KEY_TAG=key`, or None."""
    active = mlflow.active_run()
    experiment = (
        active.info.experiment_id if active else mlflow.tracking.fluent._get_experiment_id()
    )
    found = MlflowClient().search_runs(
        [experiment],
        f"tags.`{KEY_TAG}` = '{key}' and attributes.status = 'FINISHED'",
        max_results=1,
        order_by=["attributes.start_time ASC"],
    )
    return found[0].info.run_id if found else None


def start_seed_run(name: str) -> str:
    """Open seed `name`'s nested run as its node starts, active while it trains, so a Ctrl-C
    closes it as KILLED with the rest; its id."""
    return mlflow.start_run(
        run_name=name, nested=True, tags={"visprompt.stage": "training"}
    ).info.run_id


def record_seed_run(summary: Mapping[str, Any], history: Sequence[Mapping[str, float]]) -> str:
    """Log a trained seed's key, params, history and numbers into the active seed run; its id.

    The run leaves the run stack still RUNNING: `close_seed_run` finishes it once the artifact
    is logged, so an interrupted `kedro run` leaves no finished run without its artifact.
    """
    run = mlflow.active_run()
    mlflow.set_tags(
        {
            "visprompt.run": str(summary["run"]),
            "visprompt.seed": str(summary["seed"]),
            KEY_TAG: str(summary["run_key"]),
        }
    )
    try:
        log_params(summary["params"] | {"hparams_source": summary["hparams_source"]})
        for row in history:
            log_epoch(int(row["epoch"]), row)
        log_numbers(summary)
    finally:
        mlflow.end_run("RUNNING")
    return run.info.run_id


def end_seed_run(status: str) -> None:
    """End the active seed run: FAILED with its node, or deleted when the seed was reused
    (its finished run already holds the result)."""
    run = mlflow.active_run()
    mlflow.end_run("KILLED" if status == "REUSED" else status)
    if status == "REUSED":
        MlflowClient().delete_run(run.info.run_id)


def close_seed_run(run_id: str, artifact_dir: str) -> None:
    """Log the seed's saved artifact folder (as `artifact/`) and finish its run."""
    client = MlflowClient()
    client.log_artifacts(run_id, artifact_dir, "artifact")
    client.set_terminated(run_id, "FINISHED")


def set_tags(tags: Mapping[str, str]) -> None:
    mlflow.set_tags(dict(tags))


def log_changed_numbers(
    name: str,
    run_id: str | None,
    values: Mapping[str, Any],
    prefix: str = "",
    tags: Mapping[str, str] | None = None,
) -> None:
    """`log_numbers` into run `run_id` (see `nested_run`), leaving out the metrics it holds
    with the same value; with nothing new the run is not reopened."""
    numbers = _numbers(values, prefix)
    if run_id is not None:
        try:
            current = MlflowClient().get_run(run_id).data.metrics
        except MlflowException:  # not in this store: nested_run starts a new run
            current = {}
        numbers = {k: v for k, v in numbers.items() if current.get(k) != v}
        if not numbers and current:
            return
    with nested_run(name, run_id=run_id, tags=tags):
        mlflow.log_metrics(numbers)


def log_params(params: Mapping[str, Any], prefix: str = "") -> None:
    mlflow.log_params(flatten(params, prefix))


def log_epoch(epoch: int, row: Mapping[str, float], prefix: str = "") -> None:
    """One epoch's numbers as metrics at step `epoch` (NaN, e.g. no validation, is skipped)."""
    metrics = {
        f"{prefix}{k}": float(v)
        for k, v in row.items()
        if k != "epoch" and isinstance(v, int | float) and not math.isnan(v)
    }
    mlflow.log_metrics(metrics, step=int(epoch))


def log_numbers(values: Mapping[str, Any], prefix: str = "") -> None:
    """Log the scalar entries of `values` as metrics (lists and dicts are left out)."""
    mlflow.log_metrics(_numbers(values, prefix))


def _numbers(values: Mapping[str, Any], prefix: str) -> dict[str, float]:
    return {
        f"{prefix}{k}": float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def log_steps(name: str, values: Mapping[int | str, float]) -> None:
    """One metric per step (e.g. seconds per layer, step = layer) on the active run."""
    for step, value in values.items():
        mlflow.log_metric(name, value, step=int(step))


def log_files(paths: Iterable[str | Path], artifact_path: str) -> None:
    for path in paths:
        mlflow.log_artifact(str(path), artifact_path)


#: MLflow 3's UI opens every experiment in the view of a global workflow type, GenAI by
#: default (the experiment's `mlflow.experimentKind` tag only files it under one): a link
#: with this query opens the training view (runs, metrics, charts).
TRAINING_VIEW = "workflowType=machine_learning"


def name_parent_run(experiment: str, pipelines: list[str]) -> None:
    """Name the active (kedro-mlflow's) run after the experiment: `digits`, or `digits ·
    training+evaluation` for other pipelines than the default one (kedro-mlflow names it
    after the pipelines: `__default__`)."""
    if mlflow.active_run() is None:
        return
    chosen = [p for p in pipelines if p != "__default__"]
    name = f"{experiment} · {'+'.join(chosen)}" if chosen else experiment
    mlflow.set_tag("mlflow.runName", name)


def experiment_url(ui: str = "http://127.0.0.1:5000") -> str | None:
    """The UI's link to the active run's experiment in the training view (None: no run)."""
    active = mlflow.active_run()
    if active is None:
        return None
    return f"{ui}/#/experiments/{active.info.experiment_id}?{TRAINING_VIEW}"


def kedro_run_id() -> str:
    """The Kedro session id that kedro-mlflow tagged on the active run (`run_id`)."""
    active = mlflow.active_run()
    if active is None:
        return "none"
    return MlflowClient().get_run(active.info.run_id).data.tags.get("run_id", "none")
