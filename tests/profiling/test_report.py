"""Pareto fronts and tables of the efficiency report."""

from __future__ import annotations

import pandas as pd

from visprompt.profiling.report import pareto_front, plot_tradeoff, to_markdown


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "method": ["a", "b", "c", "d", "e"],
            "params": [10, 100, 1000, 50, 20],
            "throughput": [100.0, 90.0, 50.0, 95.0, None],
            "top1": [0.5, 0.7, 0.9, 0.6, 0.99],
        }
    )


def test_pareto_front_lower_cost_and_higher_throughput() -> None:
    frame = _frame()
    # params (lower is better): e (20, 0.99) dominates b, c and d; a is the cheapest
    assert pareto_front(frame, "params", "top1").tolist() == [True, False, False, False, True]
    # throughput (higher is better): e has no throughput and is never on the front
    front = pareto_front(frame, "throughput", "top1", cost_lower=False).tolist()
    assert front == [True, True, True, True, False]


def test_ties_are_not_dominated_and_markdown_keeps_ints() -> None:
    frame = pd.DataFrame({"method": ["x", "y"], "cost": [1, 1], "top1": [0.5, 0.5]})
    assert pareto_front(frame, "cost", "top1").tolist() == [True, True]
    assert "| 1,000 |" in to_markdown(pd.DataFrame({"n": [1000], "v": [0.5]}))


def test_tradeoff_plot_marks_the_front() -> None:
    fig = plot_tradeoff(_frame(), "params", "top1", log_x=True)
    ax = fig.axes[0]
    front_line = [line for line in ax.get_lines() if line.get_label() == "Pareto front"][0]
    assert list(front_line.get_xdata()) == [10, 20]
    assert ax.get_xscale() == "log"
