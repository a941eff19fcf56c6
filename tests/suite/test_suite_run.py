"""The suite end to end: two tiny real tasks x 2 runs x 2 seeds through the runner (each task
one `kedro run` in its workspace, the two in parallel processes), a task whose data is
missing reported with its install line, then a second run that reuses every seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from visprompt.evaluation.comparison import SEED_COLUMNS
from visprompt.pipelines.suite.nodes import suite_tables
from visprompt.suite import config, report, workspace

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _recipe(tmp_path: Path) -> Path:
    suite = {
        "name": "tiny",
        "workspace": str(tmp_path / "suite"),
        "seeds": [0, 1],
        "protocol": {"train": 30, "val": 20, "seed": 0},
        "tuning": {"trials": 1, "epochs": 1},
        "tasks": {
            "digits": {"source": "digits", "test": 60},
            "mnist5k": {"source": "mnist5k", "test": 60},
            "absent": {
                "source": "idx",
                "options": {"root": str(tmp_path / "nowhere")},
                "install": "apt-get install dataset-fashion-mnist",
            },
        },
        "runs": {
            "lp": {"method": "linear_probe", "backbone": "vit"},
            "ap0": {"method": "ap", "backbone": "vit", "options": {"layer": "blocks.0"}},
        },
    }
    params = {
        "experiment": {"name": "suite_tiny"},
        "data_ingestion": {"image_size": 32},
        "data_validation": {"min_train_images_per_class": 2},
        "backbone": {"build": {"vit": "vit_fmnist"}},  # the shipped weights
        "training": {"defaults": {"epochs": 1, "batch_size": 16, "progress": False}},
        "suite": suite,
    }
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump({"run": {"pipelines": "suite", "params": params}}))
    return path


def _start(recipe: Path, tasks: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KEDRO_DISABLE_TELEMETRY": "true"}
    command = [sys.executable, "-m", "visprompt.suite", "--recipe", str(recipe), "--no-report"]
    return subprocess.Popen(
        [*command, "--project", str(ROOT), "--tasks", tasks],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _run(recipe: Path, *shares: str) -> str:
    """The suite's tasks split over one process per share; their output."""
    processes = [_start(recipe, share) for share in shares]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
    return "\n".join(outputs)


def _results(suite: config.Suite) -> dict[Path, int]:
    folders = [workspace.folder(suite, task, ROOT) for task in ("digits", "mnist5k")]
    files = [f for w in folders for f in (w / "data/06_models/checkpoints").glob("*/result.json")]
    return {f: f.stat().st_mtime_ns for f in files}


def test_two_tasks_in_two_processes_then_a_rerun_reuses_every_seed(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    suite = config.load_recipe(recipe)
    output = _run(recipe, "digits", "mnist5k,absent")
    assert "absent: missing data" in output and "apt-get install dataset-fashion-mnist" in output
    seeds, tuned, status = report.collect(suite, ROOT)

    # the long table: task x run x seed, comparison_seeds.csv's columns plus `task`
    assert list(seeds.columns[: len(SEED_COLUMNS) + 1]) == ["task", *SEED_COLUMNS]
    assert sorted(zip(seeds["task"], seeds["run"], seeds["seed"], strict=True)) == sorted(
        (t, r, s) for t in ("digits", "mnist5k") for r in ("ap0", "lp") for s in (0, 1)
    )
    assert seeds["top1"].between(0, 1).all()
    # tuned on val with the same budget per run and task, the tuned values used by training
    assert sorted(zip(tuned["task"], tuned["run"], strict=True)) == [
        ("digits", "ap0"), ("digits", "lp"), ("mnist5k", "ap0"), ("mnist5k", "lp"),
    ]  # fmt: skip
    assert (tuned["trials"] == 1).all() and tuned["lr"].notna().all()
    absent = status[status["task"] == "absent"]
    assert set(absent["status"]) == {"missing data"}
    assert absent["detail"].str.contains("dataset-fashion-mnist").all()
    assert set(status.loc[status["task"] != "absent", "status"]) == {"trained"}

    # the protocol's data: 30 train / 20 val per task, test a fixed 60
    shards = workspace.folder(suite, "digits", ROOT) / "data/03_primary/shards"
    counts = json.loads((shards / "dataset.json").read_text())["counts"]
    assert {split: sum(n.values()) for split, n in counts.items()} == {
        "train": 30, "val": 20, "test": 60,
    }  # fmt: skip

    # resumable: a second run (one process, both tasks) reuses every finished seed
    before = _results(suite)
    assert len(before) == 8
    _run(recipe, "digits,mnist5k")
    assert _results(suite) == before
    again, tuned_again, _ = report.collect(suite, ROOT)
    pd.testing.assert_frame_equal(again, seeds)  # train_time_s too: nothing retrained
    pd.testing.assert_frame_equal(tuned_again, tuned)

    # the suite pipeline's node gathers the same tables
    block = yaml.safe_load(recipe.read_text())["run"]["params"]["suite"]
    node_seeds, _, node_status = suite_tables(block)
    pd.testing.assert_frame_equal(node_seeds, seeds)
    assert len(node_status) == 3 * 2
