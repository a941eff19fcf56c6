"""The project's `kedro run`: pipeline names checked up front, Ctrl-C closes MLflow runs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import click
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from visprompt.pipelines import tracking
from visprompt.pipelines.kedro_run import (
    check_pipelines,
    close_interrupted_runs,
    pipeline_names,
    preflight,
)
from visprompt.training.runs import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_pipeline_names_are_the_pipeline_folders() -> None:
    names = pipeline_names()
    assert names[0] == "__default__" and {"training", "evaluation", "registry"} <= set(names)
    check_pipelines(["training", "__default__"])
    with pytest.raises(click.ClickException, match=r"unknown pipeline\(s\) trainng; valid: "):
        check_pipelines(["trainng"])


def test_preflight_reads_the_commands_params_and_checks_namespaces(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(ROOT)  # the project `kedro run` starts in
    conf = tmp_path / "conf"  # the committed configuration, not this checkout's conf/local
    shutil.copytree(ROOT / "conf/base", conf / "base")
    (conf / "local").mkdir()
    # a partial override in conf/local, as a Kedro user writes it: merged into the run, so
    # the --params typo below is still the error (not "vp: 'backbone' is required")
    (conf / "local/parameters_training.yml").write_text(
        "training: {runs: {vp: {options: {prompt_size: 6}}}}\n"
    )
    options = {"conf_source": str(conf)}
    preflight(options | {"namespaces": ["vp", "vp.seed_0"]})
    with pytest.raises(ConfigError, match="training.runs.vp.method\\): unknown method 'vpp'"):
        preflight(options | {"params": {"training": {"runs": {"vp": {"method": "vpp"}}}}})
    with pytest.raises(click.ClickException, match=r"unknown namespace\(s\) vpx; valid: .*\bvp\b"):
        preflight(options | {"namespaces": ["vp", "vpx"]})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MlflowClient]:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        yield MlflowClient()
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(previous)


def test_interrupted_runs_are_closed_as_killed(store: MlflowClient) -> None:
    mlflow.set_experiment("interrupt")
    outer = mlflow.start_run()
    inner = mlflow.start_run(nested=True)
    assert close_interrupted_runs() == [inner.info.run_id, outer.info.run_id]
    for run in (outer, inner):
        assert store.get_run(run.info.run_id).info.status == "KILLED"
    assert mlflow.active_run() is None and close_interrupted_runs() == []


def test_ctrl_c_in_a_node_kills_its_new_run_and_keeps_a_reopened_runs_status(
    store: MlflowClient,
) -> None:
    mlflow.set_experiment("interrupt")
    with mlflow.start_run() as outer:
        with tracking.nested_run("train") as trained:
            pass  # a finished training run, reopened below to add numbers
        with pytest.raises(KeyboardInterrupt), tracking.nested_run("new") as new:
            raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt), tracking.nested_run("x", run_id=trained.info.run_id):
            raise KeyboardInterrupt
        assert mlflow.active_run().info.run_id == outer.info.run_id  # the parent stays open
    assert store.get_run(new.info.run_id).info.status == "KILLED"
    assert store.get_run(trained.info.run_id).info.status == "FINISHED"


@pytest.fixture
def mlflow_restored() -> Iterator[None]:
    """An in-process `kedro run` points MLflow at its own store and experiment (kedro-mlflow
    sets both globally): put back the session's, which later tests in this process read."""
    from mlflow.tracking import fluent

    uri, experiment = mlflow.get_tracking_uri(), fluent._active_experiment_id
    yield
    mlflow.set_tracking_uri(uri)
    fluent._active_experiment_id = experiment


def test_one_kedro_run_validates_each_run_list_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mlflow_restored: None
) -> None:
    """The preflight, the session's hook and every pipeline's creation share one validation."""
    from collections import Counter

    from click.testing import CliRunner
    from kedro.framework.startup import bootstrap_project

    from visprompt.pipelines import kedro_run, runs

    monkeypatch.chdir(ROOT)
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf/base", conf / "base")
    (conf / "local").mkdir()
    (conf / "local/mlflow.yml").write_text(  # the session's MLflow store, not the project's
        f"server: {{mlflow_tracking_uri: 'sqlite:///{tmp_path / 'mlflow.db'}'}}\n"
        f"tracking: {{experiment: {{create_experiment_kwargs: "
        f"{{artifact_location: '{tmp_path / 'artifacts'}'}}}}}}\n"
    )
    counts: Counter[str] = Counter()
    validate_runs = runs.validate_runs

    def counted(params, section="training"):
        counts[section] += 1
        return validate_runs(params, section)

    monkeypatch.setattr(runs, "validate_runs", counted)
    monkeypatch.setattr(runs, "_VALIDATED", {})
    monkeypatch.setattr(runs, "_SESSION_PARAMETERS", None)
    monkeypatch.setattr(runs, "_CREATED_FROM", None)
    bootstrap_project(ROOT)
    # every pipeline is created (the registry builds them all); no node exists by that name,
    # so nothing runs after the run lists are read
    args = ["--pipelines", "training", "--nodes", "no_such_node", "--conf-source", str(conf)]
    result = CliRunner().invoke(kedro_run.run, args)
    assert "no_such_node" in str(result.exception) + result.output
    assert counts == {"training": 1, "adavipro_report": 1, "ap_layer_sweep": 1}
