"""The comparison table and its figures."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from visprompt.evaluation import (
    COLUMNS,
    accuracy_vs_params_figure,
    comparison_table,
    confusion_figure,
    to_markdown,
    training_curves_figure,
)


def summary(method: str, trainable: int) -> dict:
    return {
        "method": method,
        "backbone": "vit",
        "trainable_params": trainable,
        "total_params": 1000,
        "train_time_s": 1.5,
        "epochs": 2,
        "best_epoch": 1,
        "best_val_top1": 0.5,
    }


def metrics(top1: float) -> dict:
    return {"top1": top1, "top5": 1.0, "macro_f1": top1, "ece": 0.1}


def test_table_joins_runs_and_sorts_by_accuracy() -> None:
    table = comparison_table(
        {"lp": summary("linear_probe", 10), "ft": summary("full_finetune", 1000)},
        {"lp": metrics(0.6), "ft": metrics(0.9)},
    )
    assert tuple(table.columns) == COLUMNS
    assert table["run"].tolist() == ["ft", "lp"]
    assert table["trainable_pct"].tolist() == pytest.approx([100.0, 1.0])
    markdown = to_markdown(table)
    assert "| ft " in markdown and "90.0" in markdown and "top1 %" in markdown


def test_missing_evaluation_is_an_error() -> None:
    with pytest.raises(ValueError, match="evaluate every trained run"):
        comparison_table({"lp": summary("linear_probe", 10)}, {})


def test_figures_render() -> None:
    table = comparison_table({"lp": summary("linear_probe", 10)}, {"lp": metrics(0.6)})
    history = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_top1": 0.1 * e} for e in range(3)]
    figures = [
        accuracy_vs_params_figure(table),
        training_curves_figure({"lp": history}),
        confusion_figure([[3, 1], [0, 4]], ["a", "b"], "lp"),
    ]
    for fig in figures:
        assert isinstance(fig, Figure)
        fig.canvas.draw()  # renders with Agg, headless
    assert figures[0].axes[0].get_xscale() == "log"
