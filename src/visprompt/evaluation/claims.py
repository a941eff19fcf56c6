"""The papers' claims, checked on this project's runs: one row per claim with the numbers.

A verdict is `holds`, `does not hold`, `not distinguishable` (the seeds cannot tell) or `not
run` (naming the recipe that produces the missing run). Accuracy claims use per-seed tables
with paired t-tests over shared seeds; cost claims use the profiling table. Tests (`test`):
- `better`: runs[0] beats runs[1] on `metric` (default top1): paired test, p < alpha.
- `preferred_depth`: runs shallow -> deep (>= 4); holds when the best layer is in the
  `prefer`red half (deep by default) and that end beats the other (paired); does not hold
  when the other end wins significantly.
- `equivalent`: the paired difference's 95 % interval lies within ±`margin` (default 0.01);
  does not hold when the runs differ significantly by more than the margin.
- `cheaper`: runs[0] costs less than runs[1] on every `metrics` column (default
  train_step_ms, peak_train_mem_mb): every ratio <= 1 − `tolerance` (0.05); fails at >= 1 + it.
- `at_least`: runs[0]'s `metric` reaches `min`: holds when the interval's low end (the value,
  for one seed) is >= min, does not hold when its high end is < min.

Across tasks (`check_claims_across_tasks`, the suite's long table with a `task` column) each
claim is judged on every task as above ("holds on k of n tasks") and once over the tasks,
a task being one sample (`evaluation.cross_task`): `better` and `preferred_depth` by the
Wilcoxon signed-rank test of the per-task mean differences (the preferred end minus the
other; the best layer by average rank), `equivalent` by the t-interval of those
differences within the margin, `cheaper` by the geometric-mean cost ratio over tasks (one
profile for all when the cost table has no `task`), `at_least` by the t-interval of the
per-task means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from visprompt.evaluation.cross_task import average_ranks, task_matrix, wilcoxon
from visprompt.evaluation.statistics import paired_test, seed_interval

HOLDS, FAILS, UNCLEAR, NOT_RUN = "holds", "does not hold", "not distinguishable", "not run"
TESTS = ("better", "preferred_depth", "equivalent", "cheaper", "at_least")
COLUMNS = ("claim", "text", "runs", "measured", "estimate", "ci_low", "ci_high",
    "p_value", "n_seeds", "verdict")  # fmt: skip
#: Columns of the cross-task claims table: one row per claim.
ACROSS_COLUMNS = ("claim", "text", "runs", "per_task", "holds_on", "n_tasks", "measured",
    "estimate", "ci_low", "ci_high", "p_value", "verdict")  # fmt: skip
#: Per-seed tables may name the accuracy `test_top1` (sweep tables): read as `top1`.
_RENAMES = {"test_top1": "top1"}


def read_seed_tables(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The per-seed rows (run, seed, metrics...) of every CSV in `paths` that exists.

    A table without a `seed` column is one seed (0). Missing files are skipped: the claims
    they would test say `not run`.
    """
    frames = []
    for path in paths:
        if Path(path).is_file():
            frame = pd.read_csv(path).rename(columns=_RENAMES)
            if "seed" not in frame:
                frame["seed"] = 0
            frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["run", "seed", "top1"])
    return pd.concat(frames, ignore_index=True).drop_duplicates(["run", "seed"], keep="last")


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _interval(values: Sequence[float]) -> str:
    s = seed_interval(values)
    if math.isnan(s.ci_low):
        return f"{_pct(s.mean)} (1 seed)"
    return f"{_pct(s.mean)} ± {_pct((s.ci_high - s.ci_low) / 2)}"


def _per_seed(seeds: pd.DataFrame, run: str, metric: str) -> pd.Series:
    rows = seeds[(seeds["run"] == run)]
    if metric not in rows:
        return pd.Series(dtype=float)
    return rows.set_index("seed")[metric].dropna().astype(float)


def _row(claim: str, spec: Mapping[str, Any], verdict: str, measured: str, **numbers: Any) -> dict:
    base = {c: math.nan for c in ("estimate", "ci_low", "ci_high", "p_value")}
    return {
        "claim": claim,
        "text": spec.get("text", claim),
        "runs": ", ".join(spec["runs"]),
        "measured": measured,
        **base,
        "n_seeds": 0,
        **numbers,
        "verdict": verdict,
    }


def _not_run(claim: str, spec: Mapping[str, Any], missing: Sequence[str], metric: str) -> dict:
    """`not run`, naming the recipe that runs the claim on one task (`recipe`) and the suite
    command that judges it across tasks (`suite`, set by check_claims), where known."""
    where = []
    recipe = spec.get("recipe") or (None if spec.get("suite") else "kedro run")
    if recipe:
        where.append(f"`{recipe}`" + (" (one task)" if spec.get("suite") else ""))
    if spec.get("suite"):
        where.append(f"`{spec['suite']}` (across tasks)")
    what = ", ".join(missing)
    return _row(claim, spec, NOT_RUN, f"no {metric} for {what}: run {' or '.join(where)}")


def _paired(
    seeds: pd.DataFrame, a: str, b: str, metric: str
) -> tuple[Any, pd.Series, pd.Series] | None:
    x, y = _per_seed(seeds, a, metric), _per_seed(seeds, b, metric)
    shared = sorted(set(x.index) & set(y.index))
    if not shared:
        return None
    return paired_test(x[shared].tolist(), y[shared].tolist()), x[shared], y[shared]


def _difference(test: Any) -> str:
    if test.n < 2:
        return f"Δ {100 * test.mean_diff:+.1f} pts (1 shared seed: no test)"
    return (
        f"Δ {100 * test.mean_diff:+.1f} pts [{100 * test.ci_low:+.1f}, "
        f"{100 * test.ci_high:+.1f}], p = {test.p_value:.3g}, {test.n} paired seeds"
    )


def _numbers(test: Any) -> dict[str, Any]:
    return {
        "estimate": test.mean_diff,
        "ci_low": test.ci_low,
        "ci_high": test.ci_high,
        "p_value": test.p_value,
        "n_seeds": test.n,
    }


def _significant(test: Any, alpha: float) -> bool:
    return test.n >= 2 and not math.isnan(test.p_value) and test.p_value < alpha


def _missing(seeds: pd.DataFrame, runs: Sequence[str], metric: str) -> list[str]:
    return [r for r in runs if _per_seed(seeds, r, metric).empty]


def _paired_or_row(claim: str, spec: Mapping, seeds: pd.DataFrame) -> dict | tuple:
    """The paired test of the claim's two runs, or its finished row when it cannot run."""
    a, b = spec["runs"]
    metric = spec.get("metric", "top1")
    missing = _missing(seeds, [a, b], metric)
    if missing:
        return _not_run(claim, spec, missing, metric)
    paired = _paired(seeds, a, b, metric)
    if paired is None:
        return _row(claim, spec, UNCLEAR, f"{a} and {b} share no seed: no paired test")
    return (a, b, metric, *paired)


def _better(claim: str, spec: Mapping, seeds: pd.DataFrame, alpha: float) -> dict:
    paired = _paired_or_row(claim, spec, seeds)
    if isinstance(paired, dict):
        return paired
    a, b, metric, test, x, y = paired
    measured = f"{a} {_interval(x)} vs {b} {_interval(y)} % ({metric}); {_difference(test)}"
    verdict = (HOLDS if test.mean_diff > 0 else FAILS) if _significant(test, alpha) else UNCLEAR
    return _row(claim, spec, verdict, measured, **_numbers(test))


def _preferred_depth(claim: str, spec: Mapping, seeds: pd.DataFrame, alpha: float) -> dict:
    runs = list(spec["runs"])
    metric = spec.get("metric", "top1")
    prefer = spec.get("prefer", "deep")
    if len(runs) < 4 or prefer not in ("deep", "shallow"):
        raise ValueError(
            f"claims.{claim}: preferred_depth needs >= 4 runs (shallow -> deep) and prefer "
            f"deep|shallow; got {len(runs)} runs, prefer {prefer!r}"
        )
    missing = _missing(seeds, runs, metric)
    if missing:
        return _not_run(claim, spec, missing, metric)
    means = [_per_seed(seeds, r, metric).mean() for r in runs]
    best = max(range(len(runs)), key=lambda i: means[i])
    preferred, other = (runs[-1], runs[0]) if prefer == "deep" else (runs[0], runs[-1])
    paired = _paired(seeds, preferred, other, metric)
    layers = ", ".join(f"{r} {_interval(_per_seed(seeds, r, metric))}" for r in runs)
    if paired is None:
        return _row(claim, spec, UNCLEAR, f"{layers} %; ends share no seed")
    test = paired[0]
    in_half = best >= len(runs) / 2 if prefer == "deep" else best < len(runs) / 2
    measured = f"{layers} % ({metric}); best {runs[best]}; {preferred} − {other}: "
    measured += _difference(test)
    if _significant(test, alpha) and test.mean_diff < 0:
        verdict = FAILS
    elif _significant(test, alpha) and in_half:
        verdict = HOLDS
    else:
        verdict = UNCLEAR
    return _row(claim, spec, verdict, measured, **_numbers(test))


def _equivalent(claim: str, spec: Mapping, seeds: pd.DataFrame, alpha: float) -> dict:
    margin = float(spec.get("margin", 0.01))
    paired = _paired_or_row(claim, spec, seeds)
    if isinstance(paired, dict):
        return paired
    a, b, metric, test, x, y = paired
    measured = (
        f"{a} {_interval(x)} vs {b} {_interval(y)} % ({metric}); {_difference(test)}; "
        f"margin ±{100 * margin:.1f} pts"
    )
    if test.n >= 2 and -margin <= test.ci_low and test.ci_high <= margin:
        verdict = HOLDS
    elif _significant(test, alpha) and abs(test.mean_diff) > margin:
        verdict = FAILS
    else:
        verdict = UNCLEAR
    return _row(claim, spec, verdict, measured, **_numbers(test))


def _cheaper(claim: str, spec: Mapping, efficiency: pd.DataFrame | None) -> dict:
    a, b = spec["runs"]
    metrics = list(spec.get("metrics", ["train_step_ms", "peak_train_mem_mb"]))
    tolerance = float(spec.get("tolerance", 0.05))
    rows = {} if efficiency is None else {r: efficiency[efficiency["run"] == r] for r in (a, b)}
    missing = [r for r in (a, b) if r not in rows or rows[r].empty]
    if missing:
        return _not_run(claim, spec, missing, "profile")
    absent = [m for m in metrics if m not in efficiency or rows[a][m].isna().any()]
    if absent:
        return _not_run(claim, spec, [f"{m} of {a}" for m in absent], "profile")
    ratios = {m: float(rows[a][m].iloc[0]) / float(rows[b][m].iloc[0]) for m in metrics}
    measured = "; ".join(
        f"{m}: {float(rows[a][m].iloc[0]):.4g} vs {float(rows[b][m].iloc[0]):.4g} "
        f"(×{ratios[m]:.2f})"
        for m in metrics
    )
    measured += f" (one profiling pass; ±{100 * tolerance:.0f} % counts as equal)"
    verdict = _cost_verdict(ratios, tolerance)
    return _row(claim, spec, verdict, measured, estimate=max(ratios.values()))


def _cost_verdict(ratios: Mapping[str, float], tolerance: float) -> str:
    """Cheaper holds when every cost ratio (a / b) is below 1 - tolerance, fails when any is
    above 1 + tolerance; in between the costs count as equal."""
    if all(r <= 1 - tolerance for r in ratios.values()):
        return HOLDS
    if any(r >= 1 + tolerance for r in ratios.values()):
        return FAILS
    return UNCLEAR


def _at_least(claim: str, spec: Mapping, seeds: pd.DataFrame) -> dict:
    (run,) = spec["runs"]
    metric = spec["metric"]
    floor = float(spec["min"])
    values = _per_seed(seeds, run, metric)
    if values.empty:
        return _not_run(claim, spec, [run], metric)
    s = seed_interval(values.tolist())
    low, high = (s.mean, s.mean) if math.isnan(s.ci_low) else (s.ci_low, s.ci_high)
    extra = [
        f"{m} {_interval(_per_seed(seeds, run, m))} %"
        for m in spec.get("also", [])
        if not _per_seed(seeds, run, m).empty
    ]
    measured = "; ".join([f"{metric} {_interval(values)} % (needs >= {_pct(floor)})", *extra])
    verdict = HOLDS if low >= floor else FAILS if high < floor else UNCLEAR
    numbers = {"estimate": s.mean, "ci_low": s.ci_low, "ci_high": s.ci_high, "n_seeds": s.n}
    return _row(claim, spec, verdict, measured, **numbers)


def _checked(claim: str, spec: Mapping[str, Any]) -> str:
    test = spec.get("test")
    if test not in TESTS:
        raise ValueError(f"claims.{claim}: test must be one of {list(TESTS)}; got {test!r}")
    if not spec.get("runs"):
        raise ValueError(f"claims.{claim}: 'runs' (the runs that test it) is required")
    return str(test)


def _check(
    claim: str,
    spec: Mapping[str, Any],
    seeds: pd.DataFrame,
    efficiency: pd.DataFrame | None,
    alpha: float,
) -> dict:
    test = _checked(claim, spec)
    if test == "cheaper":
        return _cheaper(claim, spec, efficiency)
    if test == "at_least":
        return _at_least(claim, spec, seeds)
    paired = {"better": _better, "preferred_depth": _preferred_depth}
    return paired.get(test, _equivalent)(claim, spec, seeds, alpha)


def _with_suite(spec: Mapping[str, Any], suite: str | None) -> dict[str, Any]:
    """The check with the suite command to name, unless it is a one-task check
    (`across_tasks: false`: a sweep on a backbone the suite does not run)."""
    across = suite and spec.get("across_tasks", True)
    return dict(spec) | ({"suite": suite} if across else {})


def check_claims(
    claims: Mapping[str, Mapping[str, Any]],
    seeds: pd.DataFrame,
    efficiency: pd.DataFrame | None = None,
    alpha: float = 0.05,
    suite: str | None = None,
) -> pd.DataFrame:
    """One row per claim (in the order given): the runs, the numbers and the verdict.

    `suite`: the command that judges the claims across tasks, named in the `not run` rows
    of every check but those with `across_tasks: false`.
    """
    rows = [
        _check(claim, _with_suite(spec, suite), seeds, efficiency, alpha)
        for claim, spec in claims.items()
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _task_costs(efficiency: pd.DataFrame | None, task: str) -> pd.DataFrame | None:
    """The task's cost rows, or the whole table when costs are not per task."""
    if efficiency is None or "task" not in efficiency:
        return efficiency
    return efficiency[efficiency["task"] == task]


def _task_difference(task_seeds: pd.DataFrame, a: str, b: str, metric: str) -> float:
    paired = _paired(task_seeds, a, b, metric)
    return math.nan if paired is None else paired[0].mean_diff


def _across_paired(spec: Mapping, long: pd.DataFrame, tasks: list[str], alpha: float) -> dict:
    """Across-task verdict of a `better`, `preferred_depth` or `equivalent` claim."""
    runs, metric, test = list(spec["runs"]), spec.get("metric", "top1"), spec["test"]
    a, b = runs[:2]
    note, in_half = "", True
    if test == "preferred_depth":
        a, b = (runs[-1], runs[0]) if spec.get("prefer", "deep") == "deep" else (runs[0], runs[-1])
        ranks = average_ranks(task_matrix(long[long["task"].isin(tasks)], runs, metric))
        best = runs.index(str(ranks.idxmin()))
        prefer_deep = spec.get("prefer", "deep") == "deep"
        in_half = best >= len(runs) / 2 if prefer_deep else best < len(runs) / 2
        note = f"best average rank {runs[best]} ({ranks.min():.2f}); "
    diffs = [_task_difference(long[long["task"] == t], a, b, metric) for t in tasks]
    diffs = [d for d in diffs if not math.isnan(d)]
    if len(diffs) < 2:
        return {"measured": f"{len(diffs)} task(s) with paired seeds: no test", "verdict": UNCLEAR}
    _, p = wilcoxon(diffs)
    median = float(np.median(diffs))
    summary = paired_test(diffs, [0.0] * len(diffs))
    measured = (
        f"{note}{a} − {b} over {len(diffs)} tasks: median Δ {100 * median:+.1f} pts, mean "
        f"{100 * summary.mean_diff:+.1f} [{100 * summary.ci_low:+.1f}, "
        f"{100 * summary.ci_high:+.1f}], Wilcoxon p = {p:.3g}"
    )
    numbers = {"estimate": summary.mean_diff, "ci_low": summary.ci_low,
               "ci_high": summary.ci_high, "p_value": p}  # fmt: skip
    significant = p < alpha
    if test == "equivalent":
        margin = float(spec.get("margin", 0.01))
        measured += f"; margin ±{100 * margin:.1f} pts"
        inside = -margin <= summary.ci_low and summary.ci_high <= margin
        verdict = HOLDS if inside else FAILS if significant and abs(median) > margin else UNCLEAR
    elif significant and median < 0:
        verdict = FAILS
    elif significant and (test == "better" or in_half):
        verdict = HOLDS
    else:
        verdict = UNCLEAR
    return {"measured": measured, "verdict": verdict, **numbers}


def _across_cheaper(
    spec: Mapping, efficiency: pd.DataFrame | None, tasks: list[str], rows: Mapping[str, dict]
) -> dict:
    """Across-task verdict of a `cheaper` claim: one profile for all tasks, or the geometric
    mean of the per-task ratios with the same tolerance (p: the weakest metric's Wilcoxon)."""
    if efficiency is None or "task" not in efficiency:
        only = next(iter(rows.values()))
        return {"measured": "one profile for every task", "verdict": only["verdict"],
                "estimate": only["estimate"]}  # fmt: skip
    a, b = spec["runs"]
    metrics = list(spec.get("metrics", ["train_step_ms", "peak_train_mem_mb"]))
    tolerance = float(spec.get("tolerance", 0.05))
    logs: dict[str, list[float]] = {m: [] for m in metrics}
    for task in tasks:
        costs = efficiency[efficiency["task"] == task].set_index("run")
        for m in metrics:
            logs[m].append(math.log(float(costs.at[a, m]) / float(costs.at[b, m])))
    ratios = {m: math.exp(float(np.mean(v))) for m, v in logs.items()}
    p = max(wilcoxon(v)[1] for v in logs.values()) if len(tasks) >= 2 else math.nan
    measured = "; ".join(f"{m} ×{r:.2f}" for m, r in ratios.items())
    measured += f" (geometric mean over {len(tasks)} tasks), Wilcoxon p = {p:.3g}"
    verdict = _cost_verdict(ratios, tolerance)
    return {"measured": measured, "verdict": verdict, "estimate": max(ratios.values()),
            "p_value": p}  # fmt: skip


def _across_at_least(spec: Mapping, long: pd.DataFrame, tasks: list[str]) -> dict:
    (run,) = spec["runs"]
    floor = float(spec["min"])
    means = [_per_seed(long[long["task"] == t], run, spec["metric"]).mean() for t in tasks]
    s = seed_interval(means)
    low, high = (s.mean, s.mean) if math.isnan(s.ci_low) else (s.ci_low, s.ci_high)
    measured = f"mean over {s.n} tasks {_interval(means)} % (needs >= {_pct(floor)})"
    verdict = HOLDS if low >= floor else FAILS if high < floor else UNCLEAR
    return {"measured": measured, "verdict": verdict, "estimate": s.mean,
            "ci_low": s.ci_low, "ci_high": s.ci_high}  # fmt: skip


def check_claims_across_tasks(
    claims: Mapping[str, Mapping[str, Any]],
    long: pd.DataFrame,
    efficiency: pd.DataFrame | None = None,
    alpha: float = 0.05,
    suite: str | None = None,
) -> pd.DataFrame:
    """One row per claim: its verdict on every task of the suite's long table (`task`, `run`,
    `seed`, metrics), how many tasks it holds on, and its verdict across those tasks.

    A task counts when the claim's runs have results there (a ViT claim skips a task the
    ViTs were pretrained on). `efficiency` may hold a `task` column (costs per task). Checks
    with `across_tasks: false` (one-task sweeps) are left out.
    """
    if "task" not in long or long.empty:
        raise ValueError(
            "the suite's long table needs a `task` column and rows (one per task x run x "
            "seed): no task has finished yet"
        )
    rows = []
    tasks = sorted(long["task"].unique())
    for claim, spec in claims.items():
        if not spec.get("across_tasks", True):
            continue
        spec = _with_suite(spec, suite)
        per_task = {t: _check(claim, spec, long[long["task"] == t], _task_costs(efficiency, t),
                              alpha) for t in tasks}  # fmt: skip
        judged = [t for t in tasks if per_task[t]["verdict"] != NOT_RUN]
        if not judged:  # the first task's `not run` row names what is missing
            rows.append(per_task[tasks[0]] | {"per_task": "", "holds_on": "", "n_tasks": 0})
            continue
        k = sum(per_task[t]["verdict"] == HOLDS for t in judged)
        test = spec["test"]
        if test == "cheaper":
            across = _across_cheaper(spec, efficiency, judged, per_task)
        elif test == "at_least":
            across = _across_at_least(spec, long, judged)
        else:
            across = _across_paired(spec, long, judged, alpha)
        verdict, measured = across.pop("verdict"), across.pop("measured")
        row = _row(claim, spec, verdict, f"holds on {k} of {len(judged)} tasks; across tasks: "
                   f"{measured}", **across)  # fmt: skip
        row.pop("n_seeds")
        row |= {
            "per_task": "; ".join(f"{t}: {per_task[t]['verdict']}" for t in judged),
            "holds_on": f"{k} of {len(judged)}",
            "n_tasks": len(judged),
        }
        rows.append(row)
    return pd.DataFrame(rows, columns=list(ACROSS_COLUMNS))


def claims_markdown(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """The claims table for people: claim, runs, what was measured, verdict."""
    lines = [
        "# The papers' claims, checked on these runs",
        "",
        f"Accuracies in % as mean ± 95 % t-interval half-width over seeds; Δ is a paired "
        f"difference over shared seeds (t-test, alpha = {alpha}). Verdicts: {HOLDS}, {FAILS}, "
        f"{UNCLEAR} (the seeds cannot tell), {NOT_RUN} (with the command that runs it).",
        "",
        "| claim | runs | measured | verdict |",
        "|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        cells = [row["text"], row["runs"], row["measured"], f"**{row['verdict']}**"]
        lines.append(_cells(cells))
    return "\n".join(lines) + "\n"


def _cells(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def claims_across_tasks_markdown(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """The cross-task claims table for people: per-task verdicts, k of n, the verdict across."""
    n = int(table["n_tasks"].max()) if len(table) else 0
    floor = f"{2 / 2**n:.3g}" if n else "-"
    lines = [
        "# The papers' claims, checked across tasks",
        "",
        "Per task: the verdict on that task's seeds (paired t-tests over shared seeds, alpha = "
        f"{alpha}). Across tasks, a task is one sample: Δ is the per-task mean difference, "
        f"tested with the Wilcoxon signed-rank test (alpha = {alpha}; with {n} tasks its "
        f"smallest possible two-sided p is {floor}, so fewer than 6 tasks cannot reach 0.05); "
        "equivalence needs the t-interval of Δ within the margin; costs use the geometric mean "
        f"ratio. Verdicts: {HOLDS}, {FAILS}, {UNCLEAR}, {NOT_RUN}.",
        "",
        "| claim | runs | per task | measured | verdict across tasks |",
        "|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        lines.append(_cells([row["text"], row["runs"], row["per_task"], row["measured"],
                             f"**{row['verdict']}**"]))  # fmt: skip
    return "\n".join(lines) + "\n"
