"""The profiling pipeline on a tiny ViT: every run next to the bare backbone, joined with
accuracy, plotted and logged to a real MLflow store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from kedro.io import MemoryDataset
from kedro.runner import SequentialRunner
from pipeline_kit import project_catalog

from visprompt import backbones, methods
from visprompt.evaluation import comparison_table, seed_table
from visprompt.pipelines.profiling.nodes import efficiency_report, profile_runs
from visprompt.pipelines.profiling.pipeline import profiling_pipeline

PARAMS = {
    "train_batch_size": None, "infer_batch_size": 8, "warmup": 1, "repeats": 2,
    "latency_repeats": 3, "device": "cpu", "num_workers": 0, "data_wait_batches": 2,
}  # fmt: skip
RUNS = {
    "probe": ("linear_probe", {}),
    "prompts": ("vpt", {"variant": "deep", "num_prompts": 2}),
    "low_rank": ("lora", {"rank": 2}),
}


def _summary(run: str, method: str, model: methods.AdaptedModel, run_id: str) -> dict[str, Any]:
    counts = methods.count_parameters(model)
    return {
        "run": run, "method": method, "backbone": "vit", "mlflow_run_id": run_id, "run_key": run,
        "trainable_params": counts["trainable"], "total_params": counts["total"],
        "train_time_s": 1.5, "epochs": 1, "best_epoch": 0, "best_val_top1": 0.5,
    }  # fmt: skip


@pytest.fixture(scope="module")
def outputs(
    vit_spec: dict[str, Any], shard_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("profiling")
    outputs = ["exp.efficiency", "exp.efficiency_markdown", "exp.efficiency_plots"]
    catalog = project_catalog(outputs, tmp_path)  # the project's entries: kedro-mlflow logs them
    entries: dict[str, Any] = {
        "backbone_specs": {"vit": vit_spec},
        "shards": str(shard_dir),
        "params:profiling": PARAMS,
        "params:training.defaults": {"batch_size": 4},
    }
    summaries, metrics = {}, {}
    with mlflow.start_run(run_name="profiling-test") as parent:
        for i, (run, (method, options)) in enumerate(RUNS.items()):
            model = methods.build(method, backbones.from_spec(vit_spec), 4, **options)
            with mlflow.start_run(run_name=run, nested=True) as child:
                summaries[run] = _summary(run, method, model, child.info.run_id)
            metrics[(run, 0)] = {"top1": 0.4 + 0.2 * i, "top5": 1.0, "macro_f1": 0.3, "ece": 0.1}
            entries[f"{run}.seed_0.artifact_dir"] = str(methods.save(model, tmp_path / run))
            entries[f"{run}.seed_0.train_summary"] = summaries[run]
        seeds = seed_table({(r, 0): s for r, s in summaries.items()}, metrics)
        entries["exp.comparison"] = comparison_table(seeds)
        for name, value in entries.items():
            catalog[name] = MemoryDataset(value)
        SequentialRunner().run(profiling_pipeline(dict.fromkeys(RUNS, 0), "exp"), catalog)
        artifacts = {
            a.path
            for a in mlflow.artifacts.list_artifacts(
                run_id=parent.info.run_id, artifact_path="efficiency"
            )
        }
    return {
        "table": catalog.load("exp.efficiency"),
        "markdown": catalog.load("exp.efficiency_markdown"),
        "plots": {p.name for p in (tmp_path / "data/08_reporting/exp/efficiency_plots").iterdir()},
        "artifacts": artifacts,
        "summaries": summaries,
        "artifact_dirs": {r: entries[f"{r}.seed_0.artifact_dir"] for r in RUNS},
    }


def test_efficiency_table_rows_columns_and_counts(outputs: dict[str, Any]) -> None:
    table: pd.DataFrame = outputs["table"].set_index("run")
    assert list(table.index) == ["backbone", "probe", "prompts", "low_rank"]
    required = ["method", "trainable_params", "total_params", "gflops", "train_step_ms",
                "train_step_ratio", "throughput_ips", "throughput_ratio", "latency_p50_ms",
                "latency_p95_ms", "peak_train_mem_mb", "peak_infer_mem_mb", "top1_mean",
                "train_time_s", "data_wait_frac", "pareto_throughput"]  # fmt: skip
    assert set(required) <= set(table.columns)
    assert table.at["backbone", "trainable_params"] == 0
    assert table.at["backbone", "throughput_ratio"] == 1.0
    # linear probe on D=32 features, 4 classes; deep VPT adds depth*p*D prompts (2 blocks)
    assert table.at["probe", "trainable_params"] == 32 * 4 + 4
    assert table.at["prompts", "trainable_params"] == 32 * 4 + 4 + 2 * 2 * 32
    # prompts lengthen the sequence; the probe's head has the source head's width (4)
    assert table.at["prompts", "gflops_ratio"] > 1.01
    assert table.at["probe", "gflops_ratio"] == 1.0
    assert table.at["probe", "top1_mean"] == pytest.approx(0.4)
    assert pd.isna(table.at["backbone", "top1_mean"])
    assert 0.0 <= table.at["probe", "data_wait_frac"] <= 1.0
    assert table["pareto_throughput"].sum() >= 1
    assert not table.at["backbone", "pareto_throughput"]
    # LoRA is served merged (its own row measures the un-merged model); others as they are
    assert table["deployed_merged"].to_dict() == {
        "backbone": False,
        "probe": False,
        "prompts": False,
        "low_rank": True,
    }
    assert table.at["probe", "deployed_throughput_ips"] == table.at["probe", "throughput_ips"]
    assert table.at["low_rank", "deployed_throughput_ips"] != table.at["low_rank", "throughput_ips"]
    markdown = outputs["markdown"]
    assert "| probe" in markdown and "throughput (img/s)" in markdown and "| 40.0 " in markdown
    assert len(markdown.splitlines()[0].split("|")) == 12  # a handful of columns, with units


def test_plots_and_mlflow_logging(outputs: dict[str, Any]) -> None:
    assert set(outputs["plots"]) == {"accuracy_vs_throughput.png",
                                     "accuracy_vs_trainable_params.png",
                                     "accuracy_vs_train_time.png"}  # fmt: skip
    assert {"efficiency/efficiency.csv", "efficiency/efficiency.md"} <= outputs["artifacts"]
    assert "efficiency/efficiency_plots" in outputs["artifacts"]  # the saved PNGs, logged once
    table = outputs["table"].set_index("run")
    for run, summary in outputs["summaries"].items():
        logged = mlflow.get_run(summary["mlflow_run_id"]).data.metrics
        assert logged["eff_trainable_params"] == table.at[run, "trainable_params"]
        assert logged["eff_throughput_ratio"] == pytest.approx(table.at[run, "throughput_ratio"])


def test_bad_inputs_are_clear_errors() -> None:
    profile = pd.DataFrame({"run": ["backbone"], "method": ["backbone"]})
    with pytest.raises(ValueError, match=r"comparison table lacks columns \['n_seeds'"):
        efficiency_report(profile, pd.DataFrame({"run": ["a"]}), "shards")
    with pytest.raises(ValueError, match="may not be named 'backbone'"):
        profile_runs(["backbone"], {}, "shards", PARAMS, {"batch_size": 4}, "dir", {})
    with pytest.raises(ValueError, match="expected 2 inputs per run"):
        profile_runs(["a"], {}, "shards", PARAMS, {"batch_size": 4}, "dir")


def test_unchanged_inputs_reuse_the_measured_table(
    outputs: dict[str, Any], vit_spec: dict[str, Any], shard_dir: Path, tmp_path: Path
) -> None:
    """A second profiling with the same code, artifacts, backbone and settings measures
    nothing (same timings, cache file untouched, no metric logged again); a changed
    setting measures again."""
    summary = outputs["summaries"]["probe"]
    artifact = outputs["artifact_dirs"]["probe"]
    params = PARAMS | {"cache_dir": str(tmp_path / "cache")}
    args = (["probe"], {"vit": vit_spec}, str(shard_dir))
    first = profile_runs(*args, params, {"batch_size": 4}, artifact, summary)
    (cached,) = (tmp_path / "cache").iterdir()
    written = cached.stat().st_mtime_ns
    history = mlflow.MlflowClient().get_metric_history(
        summary["mlflow_run_id"], "eff_train_step_ms"
    )
    ended = mlflow.get_run(summary["mlflow_run_id"]).info.end_time
    again = profile_runs(*args, params, {"batch_size": 4}, artifact, summary)
    assert mlflow.get_run(summary["mlflow_run_id"]).info.end_time == ended  # not even reopened
    pd.testing.assert_frame_equal(again, first)  # timings vary between measurements
    assert cached.stat().st_mtime_ns == written
    assert len(
        mlflow.MlflowClient().get_metric_history(summary["mlflow_run_id"], "eff_train_step_ms")
    ) == len(history)
    changed = profile_runs(*args, params | {"repeats": 3}, {"batch_size": 4}, artifact, summary)
    assert len(list((tmp_path / "cache").iterdir())) == 2
    assert changed["train_step_ms"].tolist() != first["train_step_ms"].tolist()
