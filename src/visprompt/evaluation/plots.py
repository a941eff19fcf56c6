"""Figures of the comparison: accuracy vs trainable parameters, training curves, confusions.

Uses matplotlib's non-interactive Agg backend through the object API (no pyplot state), so
it runs headless and in worker threads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def accuracy_vs_params_figure(table: pd.DataFrame) -> Figure:
    """Test top-1 against trainable parameters (log x), one labelled point per run."""
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    for backbone, rows in table.groupby("backbone", sort=True):
        ax.scatter(rows["trainable_params"], 100 * rows["top1"], label=str(backbone))
        for _, row in rows.iterrows():
            ax.annotate(
                row["run"],
                (row["trainable_params"], 100 * row["top1"]),
                textcoords="offset points",
                xytext=(4, 3),
                fontsize=7,
            )
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Accuracy vs trainable parameters")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="backbone")
    return fig


def training_curves_figure(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """Per-epoch training loss and validation top-1 of every run, on two panels."""
    fig = _figure(11, 4.5)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for run, history in sorted(histories.items()):
        epochs = [row["epoch"] for row in history]
        loss_ax.plot(epochs, [row["train_loss"] for row in history], marker=".", label=run)
        acc_ax.plot(epochs, [100 * row["val_top1"] for row in history], marker=".", label=run)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="Training loss", yscale="log")
    acc_ax.set(xlabel="epoch", ylabel="validation top-1 (%)", title="Validation accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
    acc_ax.legend(fontsize=7, loc="lower right", ncols=2)
    return fig


def confusion_figure(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str
) -> Figure:
    """Row-normalised confusion matrix (true class per row) with the counts written in."""
    counts = pd.DataFrame(confusion).to_numpy()
    rates = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    n = len(classes)
    fig = _figure(1.2 + 0.45 * n, 1.0 + 0.45 * n)
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), labels=classes, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels=classes, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                color = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=6, color=color)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    return fig
