"""Pareto fronts of accuracy against a cost (parameters, time, throughput)."""

from __future__ import annotations

import pandas as pd


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
