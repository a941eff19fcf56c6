"""The console: node lines, the validation verdict in one line, the end-of-run summary."""

from __future__ import annotations

import io
import logging
import re
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro_datasets.text import TextDataset
from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig
from mlflow.tracking import MlflowClient

from visprompt import progress as progress_module
from visprompt.hooks import DataTrackingHook
from visprompt.pipelines.console import (
    ConsoleHook,
    node_note,
    registry_lines,
    top_rows,
    validation_verdict,
)

ROOT = Path(__file__).resolve().parents[2]


def table(**extra: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run": ["lp", "vp_long_name", "ap"],
            "method": ["linear_probe", "vp", "ap"],
            "backbone": ["vit", "vit", "resnet"],
            "top1": [0.5, 0.9125, 0.75],
            "trainable_params": [650, 12345, 1000],
            **extra,
        }
    )


def test_validation_verdict_is_one_line_with_the_failed_rules() -> None:
    ok = {"success": True, "rules": {"a": True, "b": True}}
    assert validation_verdict(ok) == "data validation: passed, 2/2 rules"
    bad = {"success": False, "rules": {"a": True, "dup": False, "empty": False}}
    assert validation_verdict(bad) == "data validation: FAILED, 1/3 rules (dup, empty failed)"


def test_top_rows_rank_by_accuracy_with_interval_when_seeds_give_one() -> None:
    lines = top_rows(table(), rows=2)
    assert len(lines) == 2 and "vp_long_name" in lines[0] and "ap" in lines[1]
    assert "top-1  91.2 %" in lines[0] and "12,345 trainable" in lines[0]
    seeded = table(
        top1_mean=[0.5, 0.6, 0.7], top1_ci_low=[0.4, 0.5, 0.669], top1_ci_high=[0.6, 0.7, 0.731]
    )
    assert "top-1  70.0 ± 3.1 %" in top_rows(seeded, rows=1)[0]  # mean, not the single seed


def test_registry_lines_say_whether_the_alias_moved() -> None:
    moved = {
        "model_name": "m",
        "champion": "3",
        "decisions": [
            {"run": "a", "version": "2", "promoted": False, "champion_before": "1"},
            {"run": "b", "version": "3", "promoted": True, "champion_before": "1"},
        ],
    }
    assert registry_lines(moved) == ["  champion: m v3 (run b); alias moved v1 -> v3"]
    decision = {"run": "a", "version": "1", "promoted": True, "champion_before": None}
    first = {"model_name": "m", "champion": "1", "decisions": [decision]}
    assert registry_lines(first) == ["  champion: m v1 (run a); alias moved none -> v1"]
    kept = moved | {"champion": "1", "decisions": moved["decisions"][:1]}
    assert "unchanged" in registry_lines(kept)[0]


def test_node_note_states_the_results_a_person_checks_and_nothing_else() -> None:
    train = {"best_val_top1": 0.7634, "best_epoch": 5, "trainable_params": 2602,
             "total_params": 471962}  # fmt: skip
    assert node_note({"ap_vit.seed_1.train_summary": train, "ap_vit.seed_1.history": []}) == (
        "best val top1 0.763 at epoch 5, 2602/471962 trainable"
    )
    registry = {"champion": "3", "decisions": [
        {"run": "a", "version": "2", "promoted": False},
        {"run": "b", "version": "3", "promoted": True},
        {"run": "c", "version": None, "promoted": False},
    ]}  # fmt: skip
    assert node_note({"registry_summary": registry}) == (
        "3 runs: 2 versions registered, 1 promoted, 1 refused; champion v3"
    )
    refused = {"champion": None, "decisions": [{"run": "c", "version": None}]}
    assert node_note({"registry_summary": refused}).endswith("1 refused; no champion")
    assert node_note({"x": 1, "artifact_dir": "data/x"}) == ""


def test_hook_prints_one_line_per_node_and_ends_with_the_summary(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    report = tmp_path / "comparison.md"
    report.write_text("| run |")
    catalog = DataCatalog(
        {"comparison_markdown": TextDataset(filepath=str(report)), "x": MemoryDataset()}
    )
    pipeline = Pipeline(
        [
            node(lambda: 1, None, "x", name="one"),
            node(lambda v: v, "x", "y", name="two"),
            node(lambda v: v, "y", "validation_report", name="three"),
        ]
    )
    hook = ConsoleHook()
    caplog.set_level(logging.INFO, logger="visprompt.run")
    hook.before_pipeline_run({}, pipeline)
    for n in pipeline.nodes:
        hook.before_node_run(n)
        outputs = {"validation_report": {"success": True, "rules": {"a": True}}}
        hook.after_node_run(n, outputs if n.name == "three" else {n.outputs[0]: 1})
    hook.after_dataset_saved("comparison", table())
    hook.after_pipeline_run(catalog)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == len(pipeline.nodes)  # one line per node, when it finishes
    assert re.fullmatch(r"\[1/3\] one \d+\.\d s", messages[0]), messages
    assert re.fullmatch(r"\[3/3\] three \d+\.\d s: data validation: passed, 1/1 rules",
                        messages[2]), messages  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("visprompt: 3 nodes done in ")
    assert out[1] == "best runs (test top-1, 3 runs):" and "vp_long_name" in out[2]
    assert any(line.startswith("  reports: ") and "comparison.md" in line for line in out)
    assert out[-1].startswith("  MLflow: kedro mlflow ui")


def test_an_experiments_reports_end_the_run_with_each_runs_test_top1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    """`kedro run --namespaces vp,ap_vit`: each seed's evaluation line states its test top-1
    and the summary ranks the two runs from the experiment's own comparison (`exp.*`)."""
    report = tmp_path / "exp" / "comparison.md"
    report.parent.mkdir()
    report.write_text("| run |")
    catalog = DataCatalog({"exp.comparison_markdown": TextDataset(filepath=str(report))})
    pipeline = Pipeline([node(lambda: 1, None, "vp.seed_0.test_metrics", name="vp.evaluate")])
    hook = ConsoleHook()
    caplog.set_level(logging.INFO, logger="visprompt.run")
    hook.before_pipeline_run({}, pipeline)
    hook.before_node_run(pipeline.nodes[0])
    hook.after_node_run(pipeline.nodes[0], {"vp.seed_0.test_metrics": {"top1": 0.8125}})
    two = table().iloc[1:].assign(run=["vp", "ap_vit"])
    hook.after_dataset_saved("exp.comparison", two)
    tests = {"run": ["ap_vit"], "reference_kind": ["best"], "mean_diff": [-0.068],
             "p_value": [0.0972], "distinguishable": [False]}  # fmt: skip
    hook.after_dataset_saved("exp.significance", pd.DataFrame(tests))
    hook.after_dataset_saved("exp.comparison_markdown", "| run |")
    hook.after_pipeline_run(catalog)
    assert caplog.records[0].getMessage().endswith(": test top1 0.812")
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "best runs (test top-1, 2 runs):"
    assert out[2].split()[:1] == ["vp"] and "91.2 %" in out[2]
    assert out[3].split()[:1] == ["ap_vit"] and "75.0 %" in out[3]
    assert out[3].endswith("; Δ -6.8 pts vs best, p 0.0972 (≈ best)") and "Δ" not in out[2]
    assert any(line.startswith("  reports: ") and "exp/comparison.md" in line for line in out)


def test_training_nodes_are_a_job_whose_bars_name_the_seed_position_and_eta(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bars inside a training node start `[k/N] <run>.seed_<s>` and end with the job's ETA;
    a seed read back finished is "reused" and leaves the count, so the next is [2/2]."""
    monkeypatch.setattr(progress_module, "PLAIN_INTERVAL_S", 0.01)
    out = io.StringIO()

    def train(reused: bool) -> dict:
        summary = {"best_val_top1": 0.5, "best_epoch": 0, "trainable_params": 1,
                   "total_params": 2}  # fmt: skip
        if reused:
            progress_module.mark_reused()
            return summary
        for step in progress_module.progress_bar(range(4), desc="epoch 1/1", file=out):
            time.sleep(0.06)
            progress_module.advance((step + 1) / 4)
        return summary

    pipeline = Pipeline(
        [
            node(lambda: train(False), None, "a.seed_0.train_summary", name="train",
                 namespace="a.seed_0"),
            node(lambda: train(True), None, "a.seed_1.train_summary", name="train",
                 namespace="a.seed_1"),
            node(lambda: train(False), None, "b.seed_0.train_summary", name="train",
                 namespace="b.seed_0"),
            node(lambda: progress_module.describe("predict"), None, "report", name="report"),
        ]
    )  # fmt: skip
    assert [n.namespace for n in pipeline.nodes] == ["a.seed_0", "a.seed_1", "b.seed_0", None]
    hook = ConsoleHook()
    caplog.set_level(logging.INFO, logger="visprompt.run")
    hook.before_pipeline_run({}, pipeline)
    outputs = []
    for n in pipeline.nodes:
        hook.before_node_run(n)
        outputs.append(n.func())
        hook.after_node_run(n, {n.outputs[0]: outputs[-1]})
    lines = out.getvalue().splitlines()
    first = [line for line in lines if line.startswith("[1/3] a.seed_0 epoch 1/1:")]
    last = [line for line in lines if line.startswith("[2/2] b.seed_0 epoch 1/1:")]
    assert first and last and len(first) + len(last) == len(lines), lines
    assert all(re.search(r"job ETA (\?|\d+ s)\]$", line) for line in lines), lines
    assert re.search(r"job ETA \d+ s\]$", last[-1])  # measured by then
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "a.seed_0 training (1/3), job ETA ?"
    trained = r"\[1/4\] a.seed_0.train \d+\.\d s: best val top1 0.500 at epoch 0, 1/2 trainable"
    assert re.fullmatch(trained + r"; training 1/3, job ETA \d+ s", messages[1]), messages
    reused = [m for m in messages if m.startswith("[2/4] a.seed_1.train")]
    assert reused and ": reused (finished earlier" in reused[0] and "resum" not in reused[0]
    assert any(m.startswith("b.seed_0 training (2/2), job ETA ") for m in messages)
    assert outputs[-1] == "report predict"  # a bar outside training names its node
    hook.after_pipeline_run(DataCatalog({}))
    assert progress_module.current_job() is None


def test_mlflow_opens_the_experiment_in_the_training_view_and_names_the_run(
    mlflow_store: str, capsys: pytest.CaptureFixture
) -> None:
    """The project's mlflow.yml creates the experiment as a model-training one (kedro-mlflow's
    own code, a real store); the parent run carries the experiment's name, not
    `__default__`; the closing lines link to the experiment in MLflow's training view."""
    settings = yaml.safe_load((ROOT / "conf/base/mlflow.yml").read_text())
    settings["server"]["mlflow_tracking_uri"] = mlflow_store
    settings["tracking"]["experiment"]["name"] = "ux-view"
    settings["tracking"]["experiment"]["create_experiment_kwargs"]["artifact_location"] = None
    config = KedroMlflowConfig(**settings)
    config.server._mlflow_client = MlflowClient(mlflow_store)
    config._set_experiment()  # what kedro-mlflow does on `kedro run`
    experiment = mlflow.get_experiment_by_name("ux-view")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    catalog = DataCatalog({"params:experiment": MemoryDataset({"name": "digits"})})
    try:
        cases = (
            (["__default__"], "digits"),
            (["training", "evaluation"], "digits · training+evaluation"),
        )
        for pipelines, name in cases:
            with mlflow.start_run(
                experiment_id=experiment.experiment_id, run_name="__default__"
            ) as run:
                DataTrackingHook().before_pipeline_run({"pipeline_names": pipelines}, catalog)
                console = ConsoleHook()
                console.before_pipeline_run({}, Pipeline([]))
                console.before_node_run(node(lambda: 1, None, "x", name="one"))
                console.after_pipeline_run(DataCatalog({}))
            assert mlflow.get_run(run.info.run_id).info.run_name == name
    finally:
        mlflow.set_experiment("tests")
    link = f"/#/experiments/{experiment.experiment_id}?workflowType=machine_learning"
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == f"  MLflow: kedro mlflow ui, then open http://127.0.0.1:5000{link}"
