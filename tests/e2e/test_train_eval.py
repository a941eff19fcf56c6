"""End to end through the real `kedro` CLI in a project copy: ingest, validate, backbone
(local pretraining), train two runs, evaluate, compare, profile, register; the same again
(reuses every result: no new MLflow run, no file rewritten); then one run alone by namespace."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest
from e2e_kit import make_tiny

from visprompt.backbones import sha256_file

pytestmark = pytest.mark.slow

TINY_PROFILING = {"infer_batch_size": 8, "warmup": 1, "repeats": 2, "latency_repeats": 3,
                  "data_wait_batches": 1}  # fmt: skip


def test_backbone_training_evaluation_through_kedro(project_copy) -> None:
    make_tiny(project_copy)
    project_copy.update_yaml("conf/base/parameters_profiling.yml", {"profiling": TINY_PROFILING})
    models = "backbone,training,evaluation,profiling,registry"
    project_copy.run("--pipelines", f"data_ingestion,data_validation,{models}")

    data = project_copy.path / "data"
    specs = json.loads((data / "06_models/backbones/specs.json").read_text())
    assert specs["vit"]["source"] == "pretrain"
    assert specs["vit"]["sha256"] == sha256_file(project_copy.path / specs["vit"]["weights_path"])
    table = pd.read_csv(data / "08_reporting/digits/comparison.csv")
    assert sorted(table["run"]) == ["ap", "lp"]
    assert (table["epochs"] == 1).all() and table["top1_mean"].between(0, 1).all()
    lp = table.set_index("run").loc["lp"]
    assert lp["trainable_params"] == 32 * 4 + 4  # Linear(D=32, C=4)
    assert (lp["n_seeds"], table.set_index("run").loc["ap", "n_seeds"]) == (2, 1)  # ap: own seeds
    assert "| lp " in (data / "08_reporting/digits/comparison.md").read_text()
    plots = {p.name for p in (data / "08_reporting/digits/plots").iterdir()}
    assert {"accuracy_vs_params.png", "training_curves.png", "confusion.png"} <= plots
    seeds = pd.read_csv(data / "08_reporting/digits/comparison_seeds.csv")
    assert seeds[["run", "seed"]].values.tolist() == [["ap", 0], ["lp", 0], ["lp", 1]]
    significance = pd.read_csv(data / "08_reporting/digits/significance.csv")
    assert set(significance["reference_kind"]) <= {"best", "linear_probe"}
    for run, seed in (("lp", 0), ("lp", 1), ("ap", 0)):
        artifact = data / f"06_models/methods/{run}/seed_{seed}/prompt.safetensors"
        assert artifact.is_file()
        path = data / f"07_model_output/{run}/test/seed_{seed}/test_metrics.json"
        top1 = json.loads(path.read_text())["top1"]
        row = seeds[(seeds["run"] == run) & (seeds["seed"] == seed)]
        assert top1 == pytest.approx(row["top1"].item())
    assert lp["top1_mean"] == pytest.approx(seeds[seeds["run"] == "lp"]["top1"].mean())

    # MLflow: each run is a child of the `kedro run`'s run and holds its test metrics
    db = sqlite3.connect(project_copy.path / "mlflow/mlflow.db")
    children = dict(
        db.execute(
            "SELECT r.name, t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE t.key = 'mlflow.parentRunId'"
        ).fetchall()
    )
    assert {"lp.seed_0", "lp.seed_1", "ap.seed_0", "backbone_vit"} <= set(children)
    assert children["lp.seed_0"] == children["ap.seed_0"]
    top1 = db.execute(
        "SELECT m.value FROM metrics m JOIN runs r ON r.run_uuid = m.run_uuid "
        "WHERE r.name = 'lp.seed_1' AND m.key = 'test_top1'"
    ).fetchone()[0]
    assert top1 == pytest.approx(seeds[seeds["run"] == "lp"]["top1"].iloc[1])
    db.close()
    _second_run_reuses_everything(project_copy, models)

    # one run alone, by namespace: only its nodes and the experiment's reports on it run (the
    # other run's outputs stay as they are; the comparison is now that of the run named)
    untouched = [data / "07_model_output/ap/test/seed_0/test_metrics.json"]
    before = [p.stat().st_mtime_ns for p in untouched]
    lp_summary = data / "07_model_output/lp/train/seed_1/train_summary.json"
    lp_before = lp_summary.stat().st_mtime_ns
    project_copy.run("--pipelines", "training,evaluation", "--namespaces", "lp")
    assert [p.stat().st_mtime_ns for p in untouched] == before
    assert lp_summary.stat().st_mtime_ns > lp_before
    assert pd.read_csv(data / "08_reporting/digits/comparison.csv")["run"].tolist() == ["lp"]


def _second_run_reuses_everything(project_copy, models: str) -> None:
    """The same `kedro run` again: trained, profiled, registered results are reused; no new
    nested MLflow run repeats their metrics and no reused file is rewritten; the catalog
    logs the reports (kedro-mlflow datasets) to each `kedro run`'s own run."""
    from mlflow import MlflowClient

    data = project_copy.path / "data"
    kept = [
        data / "06_models/methods/lp/seed_0/prompt.safetensors",
        data / "06_models/backbones/vit.safetensors",
        *(data / "06_models/profile_cache").iterdir(),
    ]
    assert len(kept) == 3  # one profiling table cached (one backbone)
    before = [p.stat().st_mtime_ns for p in kept]
    efficiency = (data / "08_reporting/digits/efficiency.csv").read_bytes()
    client = MlflowClient(f"sqlite:///{project_copy.path / 'mlflow/mlflow.db'}")
    (experiment,) = [e.experiment_id for e in client.search_experiments() if e.name == "visprompt"]

    def runs() -> dict[str, object]:
        return {run.info.run_id: run for run in client.search_runs([experiment])}

    first = runs()
    project_copy.run("--pipelines", models)
    second = runs()
    (newest,) = set(second) - set(first)  # the kedro run's own, and no nested run
    ended = {run_id: run.info.end_time for run_id, run in first.items()}
    assert {run_id: second[run_id].info.end_time for run_id in first} == ended  # none reopened
    assert "mlflow.parentRunId" not in second[newest].data.tags
    assert [p.stat().st_mtime_ns for p in kept] == before
    assert (data / "08_reporting/digits/efficiency.csv").read_bytes() == efficiency  # measured once
    (lp,) = [r.info.run_id for r in second.values() if r.info.run_name == "lp.seed_0"]
    for metric in ("test_top1", "eff_throughput_ips", "best_val_top1"):
        assert len(client.get_metric_history(lp, metric)) == 1, metric
    logged = {a.path for a in client.list_artifacts(newest, "comparison")}
    assert {"comparison/comparison.csv", "comparison/comparison.md", "comparison/plots"} <= logged
    logged = {a.path for a in client.list_artifacts(newest, "efficiency")}
    assert {"efficiency/efficiency.csv", "efficiency/efficiency_plots"} <= logged
