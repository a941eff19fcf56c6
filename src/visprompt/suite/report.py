"""The suite's tables from its tasks' workspaces: per task x run x seed rows (the columns
of each task's comparison_seeds.csv plus `task`), the tuned settings per task and run (like
PETL_Vision's tune_summary.csv) and every declared task x run's status, so a task that did
not run (missing data, a failure) is reported, never silently dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from visprompt.suite import workspace
from visprompt.suite.config import Suite

STATUS_COLUMNS = ["task", "run", "status", "detail", "task_wall_s"]
TUNE_COLUMNS = ["task", "run", "trials", "tuning_epochs", "best_trial", "val_top1", "study"]


def seeds_table(suite: Suite, project: Path) -> pd.DataFrame:
    """Every finished task's comparison_seeds.csv, `task` first (the suite's long table)."""
    frames = []
    for task in suite.tasks:
        where = workspace.folder(suite, task, project)
        if (workspace.read_status(where) or {}).get("status") == "done":
            frame = pd.read_csv(where / f"data/08_reporting/{task}/comparison_seeds.csv")
            frames.append(frame.assign(task=task)[["task", *frame.columns]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["task"])


def tune_summary(suite: Suite, project: Path) -> pd.DataFrame:
    """One row per finished task and run: its budget, best trial, best val top-1 and the
    tuned values (one column each, empty where a run's space has no such dimension)."""
    rows = []
    budget = suite.raw["tuning"]
    for task in suite.tasks:
        where = workspace.folder(suite, task, project)
        path = where / "data/05_model_input/tuned_hparams.json"
        if (workspace.read_status(where) or {}).get("status") != "done" or not path.is_file():
            continue
        for run, best in json.loads(path.read_text()).items():
            values = {**best.get("train", {}), **best.get("options", {})}
            rows.append(
                {
                    "task": task,
                    "run": run,
                    "trials": budget["trials"],
                    "tuning_epochs": budget.get("epochs"),
                    "best_trial": best["trial"],
                    "val_top1": best["val_top1"],
                    "study": best["study"],
                    **values,
                }
            )
    columns = [*TUNE_COLUMNS, *sorted({k for r in rows for k in r} - set(TUNE_COLUMNS))]
    return pd.DataFrame(rows, columns=columns)


def status_table(suite: Suite, project: Path, seeds: pd.DataFrame) -> pd.DataFrame:
    """Each declared task x run: `trained` (its seeds are in the long table), `excluded`
    (why), or the task's status (`not run`, `missing data` with the install line, `failed`)."""
    rows = []
    trained = set(zip(seeds.get("task", []), seeds.get("run", []), strict=True))
    for task, spec in suite.tasks.items():
        status = workspace.read_status(workspace.folder(suite, task, project)) or {}
        state, detail = status.get("status", "not run"), status.get("detail", "")
        for run in suite.raw["runs"]:
            if run in spec.excluded:
                row = ("excluded", spec.excluded[run])
            elif (task, run) in trained:
                row = ("trained", "")
            else:  # a finished task without this run's rows: it was not selected (--runs)
                row = (state if state != "done" else "not run", detail)
            rows.append([task, run, *row, status.get("wall_s")])
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)


def collect(suite: Suite, project: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(suite_seeds, tune_summary, suite_status) of the suite's workspaces under `project`."""
    seeds = seeds_table(suite, project)
    return seeds, tune_summary(suite, project), status_table(suite, project, seeds)
