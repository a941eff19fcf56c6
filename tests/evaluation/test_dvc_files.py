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
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import CSVDataset
from kedro_datasets.partitions import PartitionedDataset
from matplotlib.figure import Figure

from visprompt.evaluation.dvc_files import curves_table, run_metrics

ROOT = Path(__file__).resolve().parents[2]
#: The PNGs of the comparison's `plots` folder (compare_runs: tests/pipelines/test_evaluation)
REPORT_PLOTS = ("training_curves.png", "accuracy_vs_params.png", "confusion.png",
    "reliability.png")  # fmt: skip
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
        "ece_mean": [0.05, 0.1],
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
        "macro_f1_mean": 0.9, "ece_mean": 0.05, "trainable_params": 1234, "train_time_s": 12.5,
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


def _save_reports(reports: Path, comparison: pd.DataFrame) -> None:
    """The comparison's files for DVC as the kedro run's catalog saves them."""
    PartitionedDataset(
        path=str(reports / "metrics"), dataset="json.JSONDataset", filename_suffix=".json",
        overwrite=True,
    ).save(run_metrics(comparison))  # fmt: skip
    CSVDataset(filepath=str(reports / "comparison.csv"), save_args={"index": False}).save(
        comparison
    )
    figure = Figure(figsize=(2, 2))
    figure.add_subplot().plot([0, 1], [0, 1])
    MatplotlibDataset(filepath=str(reports / "plots"), save_args={"format": "png"}).save(
        dict.fromkeys(REPORT_PLOTS, figure)
    )


@pytest.mark.slow
def test_dvc_metrics_show_and_diff_read_a_kedro_runs_reports_in_a_fresh_clone(
    tmp_path: Path,
) -> None:
    """The project's dvc.yaml, dvc.lock and .gitignore, reports written by `kedro run` (not
    by DVC: nothing of them in any cache), committed, cloned: `dvc metrics show` prints one
    row per run, `dvc metrics diff` HEAD against a second run, `dvc plots show` a page that
    loads no script from the web."""
    project = tmp_path / "project"
    project.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "HOME": str(tmp_path)}

    def run(*args: str, cwd: Path = project) -> str:
        result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "failed to load" not in result.stderr.lower(), result.stderr
        return result.stdout

    run("git", "init", "-q")
    run(DVC, "init", "-q")
    for entry in ("conf/base", "src"):
        shutil.copytree(ROOT / entry, project / entry, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "dvc.lock", ".gitignore", *(str(p.relative_to(ROOT)) for p in
                 (ROOT / "data").rglob(".gitignore"))):  # fmt: skip
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, project / name)
    reports = project / "data/08_reporting/digits"  # the embedded default experiment's
    _save_reports(reports, COMPARISON)
    validation = project / "data/08_reporting/validation/report.json"  # the data stage's
    validation.write_text(json.dumps({"success": True, "failures": []}))
    run("git", "add", "-A")
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first run")
    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(project), str(clone))

    metrics = "data/08_reporting/digits/metrics"
    table = run(DVC, "metrics", "show", cwd=clone).splitlines()
    assert table[0].split()[:3] == ["Path", "ece_mean", "macro_f1_mean"]
    rows = {line.split()[0]: line.split() for line in table[1:] if "/metrics/" in line}
    assert set(rows) == {f"{metrics}/vp.json", f"{metrics}/lp.json"}
    assert "0.9123" in rows[f"{metrics}/vp.json"]

    _save_reports(clone / "data/08_reporting/digits", COMPARISON.assign(top1_mean=[0.95, 0.8]))
    diff = json.loads(run(DVC, "metrics", "diff", "--json", cwd=clone))
    assert diff == {
        f"{metrics}/vp.json": {
            "top1_mean": {"old": 0.9123, "new": 0.95, "diff": pytest.approx(0.0377)}
        }
    }

    run(DVC, "plots", "show", "-o", str(tmp_path / "page"))
    page = (tmp_path / "page" / "index.html").read_text()
    assert page.count("<img") == len(REPORT_PLOTS) and "confusion.png" in page
    assert "http" not in page.split("<body>")[0]  # no script or style from the web
