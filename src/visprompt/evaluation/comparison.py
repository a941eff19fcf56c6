"""The comparison table across runs: one row per trained run, accuracy next to its cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

#: Column order of comparison.csv / .md (the contract in docs/architecture.md, plus context).
COLUMNS = (
    "run",
    "method",
    "backbone",
    "top1",
    "top5",
    "macro_f1",
    "ece",
    "trainable_params",
    "total_params",
    "trainable_pct",
    "train_time_s",
    "epochs",
    "best_epoch",
    "best_val_top1",
)


def comparison_table(
    summaries: Mapping[str, Mapping[str, Any]], metrics: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """Join each run's train summary with its test metrics; rows sorted by test top-1.

    Both mappings are keyed by run name and must hold the same runs: a run trained but not
    evaluated (or the reverse) is an error naming it, not a silent gap in the table.
    """
    if set(summaries) != set(metrics):
        raise ValueError(
            f"runs with a train summary {sorted(summaries)} differ from runs with test metrics "
            f"{sorted(metrics)}; evaluate every trained run"
        )
    rows = []
    for run in summaries:
        s, m = summaries[run], metrics[run]
        rows.append(
            {
                "run": run,
                "method": s["method"],
                "backbone": s["backbone"],
                "top1": m["top1"],
                "top5": m["top5"],
                "macro_f1": m["macro_f1"],
                "ece": m["ece"],
                "trainable_params": int(s["trainable_params"]),
                "total_params": int(s["total_params"]),
                "trainable_pct": 100.0 * s["trainable_params"] / s["total_params"],
                "train_time_s": s["train_time_s"],
                "epochs": int(s["epochs"]),
                "best_epoch": s.get("best_epoch"),
                "best_val_top1": s.get("best_val_top1"),
            }
        )
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return table.sort_values(["top1", "run"], ascending=[False, True], ignore_index=True)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown rendering with readable precision (accuracies in %, ECE 3 decimals)."""
    shown = table.copy()
    for col in ("top1", "top5", "macro_f1", "best_val_top1"):
        shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{100 * v:.1f}")
    shown["ece"] = shown["ece"].map(lambda v: f"{v:.3f}")
    shown["trainable_pct"] = shown["trainable_pct"].map(lambda v: f"{v:.2f}")
    shown["train_time_s"] = shown["train_time_s"].map(lambda v: f"{v:.1f}")
    shown = shown.rename(
        columns={
            "top1": "top1 %",
            "top5": "top5 %",
            "macro_f1": "macro_f1 %",
            "trainable_pct": "trainable %",
            "best_val_top1": "best_val_top1 %",
        }
    )
    return shown.to_markdown(index=False, disable_numparse=True) + "\n"
