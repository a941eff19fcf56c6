"""The project's `kedro run`: pipeline names checked up front, Ctrl-C closes MLflow runs."""

from __future__ import annotations

from pathlib import Path

import click
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from visprompt.pipelines.kedro_run import check_pipelines, close_interrupted_runs, pipeline_names


def test_pipeline_names_are_the_pipeline_folders() -> None:
    names = pipeline_names()
    assert names[0] == "__default__" and {"training", "evaluation", "registry"} <= set(names)
    check_pipelines(["training", "__default__"])
    with pytest.raises(click.ClickException, match=r"unknown pipeline\(s\) trainng; valid: "):
        check_pipelines(["trainng"])


def test_interrupted_runs_are_closed_as_killed(tmp_path: Path) -> None:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment("interrupt")
        outer = mlflow.start_run()
        inner = mlflow.start_run(nested=True)
        assert close_interrupted_runs() == [inner.info.run_id, outer.info.run_id]
        client = MlflowClient()
        for run in (outer, inner):
            assert client.get_run(run.info.run_id).info.status == "KILLED"
        assert mlflow.active_run() is None and close_interrupted_runs() == []
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)
