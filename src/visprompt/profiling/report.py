"""Efficiency tables and trade-off plots: Markdown, Pareto fronts, accuracy-vs-cost figures."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def to_markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub Markdown table; floats with `digits` significant decimals, ints as ints."""
    # object dtype keeps ints as ints when every column is numeric (tabulate sees one array)
    table = frame.astype(object).to_markdown(index=False, floatfmt=f".{digits}g", intfmt=",")
    return table + "\n"


def pareto_front(frame: pd.DataFrame, cost: str, value: str, cost_lower: bool = True) -> pd.Series:
    """Boolean mask of rows no other row beats on both `cost` and `value` (higher is better).

    `cost_lower=False` for figures where higher is better too (throughput). Rows with a
    missing figure are never on the front.
    """
    valid = frame[[cost, value]].notna().all(axis=1)
    sign = 1 if cost_lower else -1
    c = frame[cost] * sign
    front = []
    for i in frame.index:
        if not valid[i]:
            front.append(False)
            continue
        others = valid & (frame.index != i)
        dominated = (
            others
            & (c <= c[i])
            & (frame[value] >= frame.at[i, value])
            & ((c < c[i]) | (frame[value] > frame.at[i, value]))
        )
        front.append(not dominated.any())
    return pd.Series(front, index=frame.index)


def plot_tradeoff(
    frame: pd.DataFrame,
    x: str,
    y: str,
    *,
    label: str = "method",
    x_lower_better: bool = True,
    log_x: bool = False,
    title: str | None = None,
) -> plt.Figure:
    """Scatter of `y` (accuracy) against a cost `x`, each point labelled, Pareto front drawn."""
    data = frame.dropna(subset=[x, y])
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    on_front = pareto_front(data, x, y, cost_lower=x_lower_better)
    ax.scatter(data.loc[~on_front, x], data.loc[~on_front, y], color="tab:gray", label="dominated")
    front = data[on_front].sort_values(x)
    ax.plot(front[x], front[y], "o-", color="tab:red", label="Pareto front")
    for _, row in data.iterrows():
        ax.annotate(
            str(row[label]), (row[x], row[y]), fontsize=8, xytext=(3, 3), textcoords="offset points"
        )
    if log_x and (data[x] > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel(x + ("" if x_lower_better else " (higher is better)"))
    ax.set_ylabel(y)
    ax.set_title(title or f"{y} vs {x}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_curve(
    frame: pd.DataFrame, x: str, ys: Sequence[str], *, title: str, reference: Sequence[tuple]
) -> plt.Figure:
    """Lines of several `ys` against `x`, plus reference points (x, y, label) as crosses."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for y in ys:
        ax.plot(frame[x], frame[y], "o-", label=y)
    for rx, ry, rlabel in reference:
        ax.plot([rx], [ry], "kx", markersize=9)
        ax.annotate(rlabel, (rx, ry), fontsize=8, xytext=(4, -10), textcoords="offset points")
    ax.set_xlabel(x)
    ax.set_ylabel("ratio to p = 0")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
