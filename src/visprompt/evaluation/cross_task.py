"""Statistics across tasks: a method is judged on many datasets, not one (Demšar 2006).

Input is the suite's long table: one row per task x run x seed with the columns of
comparison_seeds.csv (`evaluation.comparison.SEED_COLUMNS`) plus `task`. Per task a run is
its mean over seeds with a 95 % t-interval (`evaluation.statistics`); across tasks a task is
one sample: the mean over tasks, the average rank (1 = best, ties share the mean rank), the
Friedman test, the Nemenyi critical difference (two runs whose average ranks differ by less
are not distinguishable), Holm-corrected Wilcoxon signed-rank tests against each baseline,
and win/tie/loss counts (tie: the paired t-test over the task's shared seeds is not
significant). Everything here is pure: frames in, frames (or a figure) out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from visprompt.evaluation.statistics import paired_test, seed_interval  # noqa: E402

#: Columns of the per-task table: one row per task x run.
PER_TASK_COLUMNS = ("task", "run", "n_seeds", "mean", "std", "ci_low", "ci_high")
#: Columns of the post-hoc table: one row per run x baseline.
WILCOXON_COLUMNS = ("run", "baseline", "n_tasks", "median_diff", "statistic", "p_value",
    "p_holm", "significant")  # fmt: skip
#: Columns of the win/tie/loss table: one row per run x baseline.
WTL_COLUMNS = ("run", "baseline", "wins", "ties", "losses")


@dataclass(frozen=True)
class Friedman:
    """Friedman's chi-square over `n_tasks` blocks of `n_runs` treatments, and its p-value."""

    statistic: float
    p_value: float
    n_tasks: int
    n_runs: int


def _check_long(long: pd.DataFrame, metric: str) -> None:
    missing = [c for c in ("task", "run", "seed", metric) if c not in long]
    if missing:
        raise ValueError(
            f"the suite's long table has no column {missing}: it needs one row per task x run "
            f"x seed with task, run, seed and {metric} (comparison_seeds.csv plus `task`)"
        )


def per_task_table(
    long: pd.DataFrame, metric: str = "top1", confidence: float = 0.95
) -> pd.DataFrame:
    """Mean over seeds and its t-interval per task x run (NaN interval for one seed)."""
    _check_long(long, metric)
    rows = []
    for (task, run), group in long.groupby(["task", "run"], sort=True):
        s = seed_interval(group[metric].astype(float).tolist(), confidence)
        rows.append({"task": task, "run": run, "n_seeds": s.n, "mean": s.mean, "std": s.std,
                     "ci_low": s.ci_low, "ci_high": s.ci_high})  # fmt: skip
    return pd.DataFrame(rows, columns=list(PER_TASK_COLUMNS))


def task_matrix(
    long: pd.DataFrame, runs: Sequence[str] | None = None, metric: str = "top1"
) -> pd.DataFrame:
    """Tasks x runs of seed means: the blocks of every cross-task test.

    Every run must have a result on every task (a rank over a partial set of runs means
    nothing), and there must be at least 2 tasks; otherwise a ValueError names what is
    missing.
    """
    _check_long(long, metric)
    matrix = long.pivot_table(index="task", columns="run", values=metric, aggfunc="mean")
    if runs is not None:
        absent = [r for r in runs if r not in matrix.columns]
        if absent:
            raise ValueError(f"runs {absent} are on no task of the suite's table")
        matrix = matrix[list(runs)]
    gaps = [f"{run} on {task}" for task in matrix.index for run in matrix.columns
            if pd.isna(matrix.at[task, run])]  # fmt: skip
    if gaps:
        raise ValueError(
            f"cross-task statistics need every run on every task; missing: {', '.join(gaps)}. "
            "Run the suite for them, or leave those runs (or tasks) out"
        )
    if len(matrix) < 2:
        raise ValueError(
            f"cross-task statistics need at least 2 tasks; the table has {len(matrix)} "
            f"({', '.join(map(str, matrix.index))})"
        )
    matrix.columns.name = None
    return matrix


def mean_over_tasks(matrix: pd.DataFrame) -> pd.Series:
    """Each run's mean of its per-task means (VTAB's headline number)."""
    return matrix.mean(axis=0)


def average_ranks(matrix: pd.DataFrame, higher_is_better: bool = True) -> pd.Series:
    """Each run's rank averaged over tasks; 1 is the best, tied runs share the mean rank."""
    values = -matrix.to_numpy() if higher_is_better else matrix.to_numpy()
    ranks = stats.rankdata(values, axis=1, method="average")
    return pd.Series(ranks.mean(axis=0), index=matrix.columns, name="avg_rank")


def friedman(matrix: pd.DataFrame) -> Friedman:
    """Friedman test of "every run is as good as every other" over the tasks (>= 3 runs)."""
    if matrix.shape[1] < 3:
        raise ValueError(
            f"the Friedman test needs at least 3 runs, got {list(matrix.columns)}; compare two "
            "runs with wilcoxon_vs_baselines"
        )
    result = stats.friedmanchisquare(*(matrix[c].to_numpy() for c in matrix.columns))
    return Friedman(float(result.statistic), float(result.pvalue), *matrix.shape)


def nemenyi_cd(n_runs: int, n_tasks: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks: q_alpha * sqrt(k (k + 1) / (6 N)), with
    q_alpha the studentized range quantile (infinite df) over sqrt 2 (Demšar's table)."""
    if n_runs < 2 or n_tasks < 2:
        raise ValueError(f"the Nemenyi CD needs >= 2 runs and tasks, got {n_runs}, {n_tasks}")
    q = stats.studentized_range.ppf(1 - alpha, n_runs, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(n_runs * (n_runs + 1) / (6 * n_tasks)))


def cliques(ranks: pd.Series, cd: float) -> list[list[str]]:
    """Maximal groups of runs (best first) whose average ranks lie within `cd` of each other:
    the bars of a critical-difference diagram. Single runs are not groups."""
    ordered = ranks.sort_values(kind="stable")
    names, values = list(ordered.index), ordered.to_numpy()
    groups: list[list[str]] = []
    last_end = -1
    for start in range(len(values)):
        end = start
        while end + 1 < len(values) and values[end + 1] - values[start] < cd:
            end += 1
        if end > start and end > last_end:  # not contained in the previous group
            groups.append(names[start : end + 1])
            last_end = end
    return groups


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error): the i-th smallest p times
    (m - i), kept monotone and capped at 1. (scipy's false_discovery_control is
    Benjamini-Hochberg: it controls the false discovery rate, not this.)"""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    adjusted = np.empty_like(p)
    adjusted[order] = scaled
    return adjusted


def wilcoxon(differences: Sequence[float]) -> tuple[float, float]:
    """(statistic, two-sided p) of scipy's Wilcoxon signed-rank test of per-task differences
    (zero differences dropped); (0, 1) when every difference is zero (nothing to test)."""
    diff = np.asarray(differences, dtype=float)
    if not np.any(diff):
        return 0.0, 1.0
    result = stats.wilcoxon(diff)
    return float(result.statistic), float(result.pvalue)


def wilcoxon_vs_baselines(
    matrix: pd.DataFrame, baselines: Sequence[str], alpha: float = 0.05
) -> pd.DataFrame:
    """Every other run against each baseline over the tasks, Holm-corrected over all rows."""
    absent = [b for b in baselines if b not in matrix.columns]
    if absent:
        raise ValueError(f"baselines {absent} are not runs of the table {list(matrix.columns)}")
    rows = []
    for baseline in baselines:
        for run in (c for c in matrix.columns if c != baseline):
            diff = matrix[run] - matrix[baseline]
            statistic, p = wilcoxon(diff.tolist())
            rows.append({"run": run, "baseline": baseline, "n_tasks": len(diff),
                         "median_diff": float(diff.median()), "statistic": statistic,
                         "p_value": p})  # fmt: skip
    table = pd.DataFrame(rows, columns=list(WILCOXON_COLUMNS))
    table["p_holm"] = holm(table["p_value"]) if rows else []
    table["significant"] = table["p_holm"] < alpha
    return table


def win_tie_loss(
    long: pd.DataFrame,
    baselines: Sequence[str],
    runs: Sequence[str] | None = None,
    metric: str = "top1",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per run and baseline, the tasks it wins, ties and loses. A win (loss) is a paired
    t-test over the task's shared seeds with p < `alpha` and a positive (negative) mean
    difference; anything else is a tie, including fewer than 2 shared seeds."""
    matrix = task_matrix(long, runs, metric)
    rows = []
    for baseline in baselines:
        for run in (c for c in matrix.columns if c != baseline):
            counts = {"wins": 0, "ties": 0, "losses": 0}
            for task in matrix.index:
                rows_of = long[long["task"] == task]
                a = rows_of[rows_of["run"] == run].set_index("seed")[metric]
                b = rows_of[rows_of["run"] == baseline].set_index("seed")[metric]
                shared = sorted(set(a.index) & set(b.index))
                test = paired_test(a[shared].tolist(), b[shared].tolist()) if shared else None
                if test is None or test.n < 2 or not test.p_value < alpha:
                    counts["ties"] += 1
                else:
                    counts["wins" if test.mean_diff > 0 else "losses"] += 1
            rows.append({"run": run, "baseline": baseline, **counts})
    return pd.DataFrame(rows, columns=list(WTL_COLUMNS))


def cross_task_table(
    long: pd.DataFrame,
    runs: Sequence[str] | None = None,
    baselines: Sequence[str] = (),
    metric: str = "top1",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per run, best average rank first: mean over tasks, average rank, and per
    baseline its wins/ties/losses and Holm-corrected Wilcoxon p (`<baseline>_wtl`, `_p`)."""
    matrix = task_matrix(long, runs, metric)
    table = pd.DataFrame(
        {
            "run": matrix.columns,
            "n_tasks": len(matrix),
            "mean_over_tasks": mean_over_tasks(matrix).to_numpy(),
            "avg_rank": average_ranks(matrix).to_numpy(),
        }  # fmt: skip
    )
    present = [b for b in baselines if b in matrix.columns]
    if present:
        wtl = win_tie_loss(long, present, list(matrix.columns), metric, alpha)
        tests = wilcoxon_vs_baselines(matrix, present, alpha)
        for baseline in present:
            w = wtl[wtl["baseline"] == baseline].set_index("run")
            t = tests[tests["baseline"] == baseline].set_index("run")["p_holm"]
            table[f"{baseline}_wtl"] = [
                f"{w.at[r, 'wins']}/{w.at[r, 'ties']}/{w.at[r, 'losses']}" if r in w.index else ""
                for r in table["run"]
            ]
            table[f"{baseline}_p"] = [t.get(r, math.nan) for r in table["run"]]
    return table.sort_values(["avg_rank", "run"], ignore_index=True)


def cd_diagram(ranks: pd.Series, cd: float, title: str = "") -> plt.Figure:
    """Demšar's critical-difference diagram: average ranks on an axis (1 = best, left), the
    CD as a bar above it, and runs not significantly different joined by a thick line."""
    ordered = ranks.sort_values(kind="stable")
    k = len(ordered)
    low, high = 1, max(k, math.ceil(ordered.max()))
    half = math.ceil(k / 2)
    groups = cliques(ordered, cd)
    below = 0.3 + 0.12 * len(groups)  # the clique bars sit between the axis and the labels
    bottom = below + 0.45 * half + 0.3
    fig, ax = plt.subplots(figsize=(7.0, 0.9 + 0.55 * (bottom + 1.6)))
    ax.set_xlim(low - 0.5, high + 0.5)
    ax.set_ylim(-bottom, 1.6)
    ax.axis("off")
    ax.hlines(0, low, high, color="black", linewidth=1)
    for tick in range(low, high + 1):
        ax.vlines(tick, 0, 0.12, color="black", linewidth=1)
        ax.text(tick, 0.22, str(tick), ha="center", va="bottom", fontsize=9)
    ax.plot([low, low + cd], [1.1, 1.1], color="black", linewidth=2)
    ax.text(low + cd / 2, 1.2, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    for i, (name, rank) in enumerate(ordered.items()):
        left = i < half
        level = -below - 0.45 * (i + 1 if left else k - i)
        end = low - 0.3 if left else high + 0.3
        ax.plot([rank, rank, end], [0, level, level], color="0.3", linewidth=0.8)
        label = f"{name} ({rank:.2f})"
        ax.text(end, level, label, ha="right" if left else "left", va="center", fontsize=8)
    for j, group in enumerate(groups):
        level = -0.2 - 0.12 * j
        ax.plot([ordered[group[0]] - 0.03, ordered[group[-1]] + 0.03], [level, level],
                color="black", linewidth=3, solid_capstyle="round")  # fmt: skip
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def cross_task_markdown(
    table: pd.DataFrame,
    per_task: pd.DataFrame,
    test: Friedman | None,
    cd: float | None,
    alpha: float = 0.05,
    left_out: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The per-task means and the cross-task summary for people (accuracies in %), naming
    the tasks `left_out` of the ranks and the runs they lack."""
    wide = per_task.assign(
        cell=[
            f"{100 * m:.1f}" + ("" if math.isnan(lo) else f" ± {100 * (hi - lo) / 2:.1f}")
            for m, lo, hi in zip(
                per_task["mean"], per_task["ci_low"], per_task["ci_high"], strict=True
            )
        ]  # fmt: skip
    ).pivot(index="run", columns="task", values="cell")
    wide = wide.reindex(table["run"]).fillna("")
    summary = table.assign(
        mean_over_tasks=[f"{100 * v:.1f}" for v in table["mean_over_tasks"]],
        avg_rank=[f"{v:.2f}" for v in table["avg_rank"]],
        **{
            c: ["" if math.isnan(v) else f"{v:.3g}" for v in table[c]]
            for c in table.columns
            if c.endswith("_p")
        },
    )
    lines = ["## Per task: mean ± 95 % t-interval over seeds (%)", "",
             wide.reset_index().to_markdown(index=False, disable_numparse=True), "",
             "## Across tasks", ""]  # fmt: skip
    for task, runs in (left_out or {}).items():
        lines.append(f"Left out of the cross-task statistics: {task} (no {', '.join(runs)}).")
    if test is not None:
        lines.append(
            f"Friedman test over {test.n_tasks} tasks and {test.n_runs} runs: "
            f"chi² = {test.statistic:.2f}, p = {test.p_value:.3g}."
        )
    if cd is not None:
        lines.append(f"Nemenyi critical difference of average ranks (alpha = {alpha}): {cd:.2f}.")
    lines += [
        "Average rank: 1 is the best, ties share the mean rank. `<baseline>_wtl`: tasks won / "
        f"tied / lost against it (tie: the paired t-test over the task's seeds has p >= {alpha}"
        "); `<baseline>_p`: Wilcoxon signed-rank over tasks, Holm-corrected.",
        "",
        summary.to_markdown(index=False, disable_numparse=True),
    ]
    return "\n".join(lines) + "\n"


def complete_tasks(
    long: pd.DataFrame, runs: Sequence[str] | None = None, metric: str = "top1"
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """(rows of the tasks where every run has a result, {left-out task: its missing runs}):
    the complete block design the rank tests need (a ViT skips its pretraining data)."""
    _check_long(long, metric)
    wanted = list(runs) if runs is not None else sorted(long["run"].unique())
    present = long[long["run"].isin(wanted)].groupby("task")["run"].agg(set)
    missing = {str(t): [r for r in wanted if r not in got] for t, got in present.items()}
    left_out = {t: m for t, m in missing.items() if m}
    return long[~long["task"].isin(left_out)], left_out


def cross_task_report(
    long: pd.DataFrame,
    runs: Sequence[str] | None = None,
    baselines: Sequence[str] = ("linear_probe", "full_finetune"),
    metric: str = "top1",
    alpha: float = 0.05,
    drop_incomplete_tasks: bool = False,
) -> Mapping[str, object]:
    """Everything a suite writes, from its long table: `per_task` (every task), `table`
    (cross-task), `friedman` (None under 3 runs), `cd`, `left_out` ({task: missing runs},
    with `drop_incomplete_tasks`; otherwise a missing run is an error), `markdown` and the
    CD `figure`."""
    ranked, left_out = complete_tasks(long, runs, metric) if drop_incomplete_tasks else (long, {})
    matrix = task_matrix(ranked, runs, metric)
    per_task = per_task_table(long[long["run"].isin(matrix.columns)], metric)
    table = cross_task_table(ranked, list(matrix.columns), baselines, metric, alpha)
    test = friedman(matrix) if matrix.shape[1] >= 3 else None
    cd = nemenyi_cd(matrix.shape[1], len(matrix), alpha)
    ranks = table.set_index("run")["avg_rank"]
    figure = cd_diagram(ranks, cd, f"average rank over {len(matrix)} tasks ({metric})")
    markdown = cross_task_markdown(table, per_task, test, cd, alpha, left_out)
    return {"per_task": per_task, "table": table, "friedman": test, "cd": cd,
            "left_out": left_out, "markdown": markdown, "figure": figure}  # fmt: skip
