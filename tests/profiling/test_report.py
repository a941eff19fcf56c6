"""Pareto fronts and tables of the efficiency report."""

from __future__ import annotations

import pandas as pd

from visprompt.evaluation.pareto import pareto_front
from visprompt.profiling.report import efficiency_markdown, to_markdown


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


def test_efficiency_markdown_has_a_handful_of_columns_with_units() -> None:
    table = pd.DataFrame(
        {
            "run": ["backbone", "vp"], "backbone": ["vit", "vit"],
            "trainable_params": [0, 12345], "gflops": [0.1, 0.1], "train_step_ms": [5.0, 6.0],
            "throughput_ips": [1000.0, 900.0], "latency_p50_ms": [1.0, 1.1],
            "peak_train_mem_mb": [10.0, 11.0], "train_time_s": [None, 3.25],
            "top1_mean": [None, 0.875], "gflops_ratio": [1.0, 1.0],
        }
    )  # fmt: skip
    lines = efficiency_markdown(table).splitlines()
    assert "| run " in lines[0] and "test top-1 (%)" in lines[0] and "gflops_ratio" not in lines[0]
    assert "12,345" in lines[3] and "| 87.5 " in lines[3] and "| 3.2 " in lines[3]
    assert lines[2].split("|")[-2].strip() == ""  # the bare backbone has no accuracy
