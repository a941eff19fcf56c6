"""DVC's own commands read the project's reports: metrics per run, curves, the scatter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from kedro_datasets.pandas import CSVDataset
from kedro_datasets.partitions import PartitionedDataset

from visprompt.evaluation.dvc_files import curves_table, run_metrics

ROOT = Path(__file__).resolve().parents[2]
DVC = str(Path(sys.executable).parent / "dvc")

COMPARISON = pd.DataFrame(
    {
        "run": ["vp", "lp"],
        "method": ["vp", "linear_probe"],
        "backbone": ["vit", "vit"],
        "top1_mean": [0.91234, 0.8],
        "top1_ci_low": [0.9, float("nan")],
        "top1_ci_high": [0.92468, float("nan")],
        "macro_f1_mean": [0.9, 0.79],
        "trainable_params": [1234.0, 650.0],
        "train_time_s": [12.5, 3.25],
    }
)
HISTORIES = {
    ("vp", 0): [
        {"epoch": 0, "val_top1": 0.5, "train_loss": 2.0},
        {"epoch": 1, "val_top1": 0.7, "train_loss": 1.0},
    ],
    ("vp", 1): [{"epoch": 0, "val_top1": 0.4, "train_loss": 2.1}],
    ("lp", 0): [{"epoch": 0, "val_top1": 0.6, "train_loss": 1.5}],
}  # fmt: skip


def test_run_metrics_are_a_few_numbers_per_run() -> None:
    metrics = run_metrics(COMPARISON)
    assert list(metrics) == ["vp", "lp"]
    assert metrics["vp"] == {
        "top1_mean": 0.9123, "top1_ci_low": 0.9, "top1_ci_high": 0.9247,
        "macro_f1_mean": 0.9, "trainable_params": 1234, "train_time_s": 12.5,
    }  # fmt: skip
    assert "top1_ci_low" not in metrics["lp"]  # one seed: no interval, no NaN in JSON
    with pytest.raises(ValueError, match="lacks"):
        run_metrics(COMPARISON.drop(columns="top1_mean"))


def test_curves_table_is_long_format_sorted() -> None:
    table = curves_table(HISTORIES)
    assert list(table.columns) == ["run", "seed", "epoch", "train_loss", "val_top1"]
    assert table[["run", "seed", "epoch"]].values.tolist() == [
        ["lp", 0, 0], ["vp", 0, 0], ["vp", 0, 1], ["vp", 1, 0]
    ]  # fmt: skip


@pytest.mark.slow
def test_dvc_metrics_and_plots_read_the_reports(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "HOME": str(tmp_path)}

    def run(*args: str) -> str:
        result = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    run("git", "init", "-q")
    run(DVC, "init", "-q")
    for entry in ("conf/base", ".dvc/plots", "src"):
        shutil.copytree(ROOT / entry, project / entry, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    # dvc.yaml reads the run list from params.yaml, a link to parameters_training.yml
    shutil.copy(ROOT / "params.yaml", project / "params.yaml", follow_symlinks=False)
    reports = project / "data/08_reporting/digits"  # the embedded default experiment's
    PartitionedDataset(
        path=str(reports / "metrics"), dataset="json.JSONDataset", filename_suffix=".json"
    ).save(run_metrics(COMPARISON))
    CSVDataset(filepath=str(reports / "comparison.csv"), save_args={"index": False}).save(
        COMPARISON
    )
    CSVDataset(filepath=str(reports / "training_curves.csv"), save_args={"index": False}).save(
        curves_table(HISTORIES)
    )
    table = run(DVC, "metrics", "show").splitlines()
    assert table[0].split()[:3] == ["Path", "macro_f1_mean", "top1_ci_high"]
    rows = {line.split()[0]: line.split() for line in table[1:] if "/metrics/" in line}
    metrics = "data/08_reporting/digits/metrics"
    assert set(rows) == {f"{metrics}/vp.json", f"{metrics}/lp.json"}
    assert "0.9123" in rows[f"{metrics}/vp.json"]
    plots = json.loads(run(DVC, "plots", "show", "--json"))
    assert not plots.get("errors"), plots["errors"]
    data = plots["data"]
    assert len(data["training curves (validation top-1)"][0]["content"]["data"]["values"]) == 4
    scatter = data["test top-1 vs trainable parameters"][0]["content"]
    assert scatter["encoding"]["x"]["scale"] == {"type": "log"}
