"""Nodes of the claims: one experiment's (the claims pipeline: read the result tables, check
every claim) and the suite's (every claim per task and across tasks, from its long table)."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from visprompt.evaluation.claims import (
    check_claims,
    check_claims_across_tasks,
    claims_across_tasks_markdown,
    claims_markdown,
    read_seed_tables,
)
from visprompt.evaluation.cross_task import complete_tasks, cross_task_report, per_task_table


def report_claims(
    experiment: str, efficiency: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, str]:
    """(claims table, its Markdown) from the per-seed and cost tables named in `params`
    (`{experiment}` in a path: the experiment's name, whose reports it reads).

    `efficiency` is the default chain's profiling table (an input, so the report follows
    it); `seed_tables` and `cost_tables` are read when they exist (sweep recipes write
    them), and the claims whose runs none of them holds say `not run` with the recipe.
    """
    alpha = float(params.get("alpha", 0.05))
    seeds, extra_costs = (
        read_seed_tables([str(p).format(experiment=experiment) for p in params.get(key) or []])
        for key in ("seed_tables", "cost_tables")
    )
    costs = pd.concat([efficiency, extra_costs], ignore_index=True).drop_duplicates(
        "run", keep="last"
    )
    table = check_claims(params["checks"], seeds, costs, alpha, params.get("suite"))
    return table, claims_markdown(table, alpha)


def report_claims_across_tasks(
    seeds: pd.DataFrame, costs: pd.DataFrame | None, params: dict[str, Any]
) -> tuple[pd.DataFrame, str]:
    """(claims table, its Markdown) of a suite: `seeds` is its long table (task, run, seed,
    metrics...), `costs` per-run profiling rows (with `task` when measured per task, or
    None), `params` the `claims` parameters (checks, alpha, suite)."""
    alpha = float(params.get("alpha", 0.05))
    table = check_claims_across_tasks(params["checks"], seeds, costs, alpha, params.get("suite"))
    return table, claims_across_tasks_markdown(table, alpha)


def report_suite(
    seeds: pd.DataFrame, suite: dict[str, Any], params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, str, plt.Figure, pd.DataFrame, str]:
    """The suite's cross-task outputs from its long table (`suite_seeds`): per-task means,
    the cross-task table (mean over tasks, average rank, win/tie/loss and Holm-Wilcoxon
    against the suite's `baselines`), its Markdown, the CD diagram, and the claims per task
    and across tasks with their Markdown. Ranks are over the tasks every run has (the ViTs
    skip their pretraining data); the tasks left out are named. A partial suite (fewer than 2
    such tasks finished) gets its per-task means and claims, and a note instead of ranks."""
    alpha = float(params.get("alpha", 0.05))
    claims, claims_md = report_claims_across_tasks(seeds, None, params)
    title = f"# Suite {suite.get('name', '')}: every run across tasks\n\n"
    ranked, left_out = complete_tasks(seeds)
    if ranked["task"].nunique() < 2:  # a partial suite: its per-task means, no ranks yet
        per_task = per_task_table(seeds)
        note = (
            "Cross-task statistics need at least 2 tasks on which every run has finished; "
            f"finished: {', '.join(sorted(seeds['task'].unique()))}"
            + "".join(f"; {t} lacks {', '.join(r)}" for t, r in left_out.items())
            + ".\n"
        )
        figure, ax = plt.subplots(figsize=(6, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "not enough finished tasks for ranks", ha="center", va="center")
        return per_task, pd.DataFrame(), title + note, figure, claims, claims_md
    report = cross_task_report(
        seeds, baselines=list(suite.get("baselines") or ()), alpha=alpha,
        drop_incomplete_tasks=True,
    )  # fmt: skip
    figure_link = "\n![critical-difference diagram](cd_diagram.png)\n"
    return (report["per_task"], report["table"], title + report["markdown"] + figure_link,
            report["figure"], claims, claims_md)  # fmt: skip
