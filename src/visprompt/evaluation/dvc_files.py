"""What DVC's own commands read: one small metrics JSON per run (`dvc metrics show` prints a
row per file, readable with any number of runs), and the training curves as one long CSV
(the numbers behind training_curves.png, for a spreadsheet or `dvc plots show <csv>`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

#: Columns of comparison.csv in each run's metrics file (the ones a reader compares).
METRIC_COLUMNS = ("top1_mean", "top1_ci_low", "top1_ci_high", "macro_f1_mean", "ece_mean",
    "trainable_params", "train_time_s")  # fmt: skip
#: Columns of a training history kept in the curves table.
CURVE_COLUMNS = ("train_loss", "train_top1", "val_loss", "val_top1", "lr")


def run_metrics(comparison: pd.DataFrame) -> dict[str, dict[str, float | int]]:
    """run -> {metric: value} from the comparison table (4 significant decimals)."""
    missing = [c for c in ("run", *METRIC_COLUMNS) if c not in comparison.columns]
    if missing:
        raise ValueError(f"comparison table lacks {missing}; columns: {list(comparison.columns)}")
    metrics = {}
    for _, row in comparison.iterrows():
        values: dict[str, float | int] = {}
        for column in METRIC_COLUMNS:
            value = row[column]
            if pd.notna(value):
                values[column] = int(value) if column == "trainable_params" else round(value, 4)
        metrics[str(row["run"])] = values
    return metrics


def curves_table(
    histories: Mapping[tuple[str, int], Sequence[Mapping[str, float]]],
) -> pd.DataFrame:
    """One row per (run, seed, epoch) with the history's loss/accuracy/lr columns."""
    rows = [
        {"run": run, "seed": seed, "epoch": int(entry["epoch"])}
        | {c: entry[c] for c in CURVE_COLUMNS if c in entry}
        for (run, seed), history in histories.items()
        for entry in history
    ]
    columns = ["run", "seed", "epoch", *CURVE_COLUMNS]
    table = pd.DataFrame(rows, columns=columns).dropna(axis=1, how="all")
    return table.sort_values(["run", "seed", "epoch"], ignore_index=True)
