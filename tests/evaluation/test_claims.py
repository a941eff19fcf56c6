"""Claims verdicts on small synthetic per-seed and profiling tables."""

from __future__ import annotations

import pandas as pd
import pytest

from visprompt.evaluation.claims import (
    FAILS,
    HOLDS,
    NOT_RUN,
    UNCLEAR,
    check_claims,
    check_claims_across_tasks,
    claims_across_tasks_markdown,
    claims_markdown,
    read_seed_tables,
)


def seeds(**runs: list[float]) -> pd.DataFrame:
    """Per-seed rows: run -> top1 per seed 0, 1, 2, ..."""
    rows = [
        {"run": run, "seed": seed, "top1": value}
        for run, values in runs.items()
        for seed, value in enumerate(values)
    ]
    return pd.DataFrame(rows)


def verdict(spec: dict, table: pd.DataFrame, efficiency: pd.DataFrame | None = None) -> str:
    return check_claims({"c": spec}, table, efficiency).iloc[0]["verdict"]


def better(a: str = "ap", b: str = "vp") -> dict:
    return {"test": "better", "runs": [a, b], "recipe": "kedro run --config pipelines/x.yml"}


def test_better_uses_the_paired_test_on_shared_seeds() -> None:
    clear = seeds(ap=[0.80, 0.82, 0.81], vp=[0.70, 0.71, 0.69])
    assert verdict(better(), clear) == HOLDS
    assert verdict(better("vp", "ap"), clear) == FAILS
    noisy = seeds(ap=[0.80, 0.70, 0.75], vp=[0.72, 0.78, 0.74])
    assert verdict(better(), noisy) == UNCLEAR
    # a consistent small gain is still a gain when every seed shows it (paired, not pooled)
    paired = seeds(ap=[0.501, 0.701, 0.601], vp=[0.50, 0.70, 0.60])
    assert verdict(better(), paired) == HOLDS
    assert verdict(better(), seeds(ap=[0.9], vp=[0.1])) == UNCLEAR  # one seed: no test


def test_missing_runs_say_not_run_with_the_recipe() -> None:
    row = check_claims({"c": better()}, seeds(ap=[0.8, 0.9])).iloc[0]
    assert row["verdict"] == NOT_RUN
    assert "vp" in row["measured"] and "kedro run --config pipelines/x.yml" in row["measured"]
    # with a suite: the one-task recipe and the command that judges it across tasks
    row = check_claims({"c": better()}, seeds(ap=[0.8]), suite="python -m visprompt.suite")
    assert row.iloc[0]["measured"].endswith(
        "run `kedro run --config pipelines/x.yml` (one task) or `python -m visprompt.suite` "
        "(across tasks)"
    )
    suite_only = {"test": "better", "runs": ["ap_mae", "vp"]}
    row = check_claims({"c": suite_only}, seeds(ap=[0.8]), suite="python -m visprompt.suite")
    assert row.iloc[0]["measured"].endswith("run `python -m visprompt.suite` (across tasks)")
    # a one-task sweep's check: the suite does not run it, so it is not named
    sweep = better() | {"across_tasks": False}
    row = check_claims({"c": sweep}, seeds(ap=[0.8]), suite="python -m visprompt.suite")
    assert row.iloc[0]["measured"].endswith("run `kedro run --config pipelines/x.yml`")


def test_preferred_depth() -> None:
    spec = {"test": "preferred_depth", "runs": ["l1", "l2", "l3", "l4"]}
    deep = seeds(l1=[0.5, 0.52, 0.51], l2=[0.6, 0.6, 0.62], l3=[0.7, 0.7, 0.71], l4=[0.8, 0.8, 0.8])
    assert verdict(spec, deep) == HOLDS
    assert verdict(spec | {"prefer": "shallow"}, deep) == FAILS
    flat = seeds(l1=[0.7, 0.6, 0.8], l2=[0.7] * 3, l3=[0.7] * 3, l4=[0.8, 0.6, 0.7])
    assert verdict(spec, flat) == UNCLEAR
    with pytest.raises(ValueError, match=">= 4 runs"):
        verdict(spec | {"runs": ["l1", "l2", "l3"]}, deep)


def test_equivalent_needs_the_interval_inside_the_margin() -> None:
    spec = {"test": "equivalent", "runs": ["ap_channel", "norm"], "margin": 0.01}
    same = seeds(ap_channel=[0.800, 0.810, 0.790], norm=[0.801, 0.809, 0.792])
    assert verdict(spec, same) == HOLDS
    apart = seeds(ap_channel=[0.70, 0.71, 0.72], norm=[0.80, 0.81, 0.82])
    assert verdict(spec, apart) == FAILS
    wide = seeds(ap_channel=[0.70, 0.80, 0.75], norm=[0.76, 0.74, 0.75])
    assert verdict(spec, wide) == UNCLEAR


def test_cheaper_compares_every_cost_with_a_tolerance() -> None:
    spec = {"test": "cheaper", "runs": ["ap", "vp"]}

    def eff(ap_ms: float, ap_mb: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "run": ["ap", "vp"],
                "train_step_ms": [ap_ms, 10.0],
                "peak_train_mem_mb": [ap_mb, 100.0],
            }
        )

    table = seeds(ap=[0.8], vp=[0.7])
    assert verdict(spec, table, eff(5.0, 50.0)) == HOLDS
    assert verdict(spec, table, eff(5.0, 120.0)) == FAILS  # cheaper in time, not in memory
    assert verdict(spec, table, eff(9.8, 50.0)) == UNCLEAR  # within ±5 %
    assert verdict(spec, table, None) == NOT_RUN
    row = check_claims({"c": spec}, table, eff(5.0, 50.0)).iloc[0]
    assert row["estimate"] == pytest.approx(0.5) and "×0.50" in row["measured"]


def test_at_least_reads_a_metric_over_seeds() -> None:
    spec = {"test": "at_least", "runs": ["pgn"], "metric": "rgb_agreement_uint8", "min": 0.99}
    table = seeds(pgn=[0.8, 0.8, 0.8])
    table["rgb_agreement_uint8"] = [0.999, 0.998, 1.0]
    assert verdict(spec, table) == HOLDS
    table["rgb_agreement_uint8"] = [0.90, 0.92, 0.91]
    assert verdict(spec, table) == FAILS
    table["rgb_agreement_uint8"] = [0.95, 1.0, 0.999]
    assert verdict(spec, table) == UNCLEAR
    assert verdict(spec, seeds(pgn=[0.8])) == NOT_RUN  # the metric was never measured


def test_tables_from_files_and_markdown(tmp_path) -> None:
    seeds(ap=[0.8, 0.82, 0.81]).to_csv(tmp_path / "comparison_seeds.csv", index=False)
    pd.DataFrame({"run": ["vp"], "test_top1": [0.7]}).to_csv(tmp_path / "sweep.csv", index=False)
    table = read_seed_tables(
        [tmp_path / "comparison_seeds.csv", tmp_path / "sweep.csv", tmp_path / "absent.csv"]
    )
    assert sorted(zip(table["run"], table["seed"], strict=True)) == [
        ("ap", 0),
        ("ap", 1),
        ("ap", 2),
        ("vp", 0),
    ]
    result = check_claims({"ap_beats_vp": better() | {"text": "AP beats VP"}}, table)
    markdown = claims_markdown(result)
    assert "| AP beats VP | ap, vp |" in markdown and f"**{UNCLEAR}**" in markdown
    with pytest.raises(ValueError, match="test must be one of"):
        check_claims({"x": {"test": "bigger", "runs": ["a"]}}, table)


def tasks_table(n_tasks: int, **runs: list[float]) -> pd.DataFrame:
    """The suite's long table: the per-seed `runs` on tasks t0..t{n-1}, task i shifted by
    i points (tasks differ in difficulty, the differences between runs do not)."""
    base = seeds(**runs)
    return pd.concat(
        [base.assign(task=f"t{i}", top1=base["top1"] - 0.01 * i) for i in range(n_tasks)],
        ignore_index=True,
    )


def across(spec: dict, long: pd.DataFrame, efficiency: pd.DataFrame | None = None) -> pd.Series:
    return check_claims_across_tasks({"c": spec}, long, efficiency).iloc[0]


def test_across_tasks_counts_tasks_and_tests_over_them() -> None:
    clear = dict(ap=[0.80, 0.82, 0.81], vp=[0.70, 0.71, 0.69])
    row = across(better(), tasks_table(6, **clear))
    assert row["verdict"] == HOLDS and row["holds_on"] == "6 of 6" and row["n_tasks"] == 6
    assert row["p_value"] == pytest.approx(2 / 2**6)  # exact Wilcoxon: 6 of 6 tasks positive
    assert row["measured"].startswith("holds on 6 of 6 tasks; across tasks: ap − vp over 6 tasks")
    assert row["per_task"].startswith(f"t0: {HOLDS}; t1: {HOLDS}")
    # 4 tasks: every task holds, but 4 samples cannot reach p < 0.05 (smallest p = 0.125)
    four = across(better(), tasks_table(4, **clear))
    assert four["holds_on"] == "4 of 4" and four["verdict"] == UNCLEAR
    assert four["p_value"] == pytest.approx(0.125)
    assert across(better("vp", "ap"), tasks_table(6, **clear))["verdict"] == FAILS


def test_across_tasks_skips_tasks_without_the_runs_and_names_the_suite() -> None:
    long = tasks_table(3, ap=[0.80, 0.82, 0.81], vp=[0.70, 0.71, 0.69])
    long = long[~((long["task"] == "t2") & (long["run"] == "vp"))]  # e.g. a ViT's own task
    row = across(better(), long)
    assert row["n_tasks"] == 2 and row["holds_on"] == "2 of 2" and "t2" not in row["per_task"]
    missing = check_claims_across_tasks(
        {"c": better("spt", "vpt")}, long, suite="python -m visprompt.suite"
    ).iloc[0]
    assert missing["verdict"] == NOT_RUN and missing["n_tasks"] == 0
    assert missing["measured"] == (
        "no top1 for spt, vpt: run `kedro run --config pipelines/x.yml` (one task) or "
        "`python -m visprompt.suite` (across tasks)"
    )
    sweep = better() | {"across_tasks": False}
    assert check_claims_across_tasks({"c": better(), "s": sweep}, long)["claim"].tolist() == ["c"]
    with pytest.raises(ValueError, match="`task` column"):
        check_claims_across_tasks({"c": better()}, long.drop(columns="task"))
    with pytest.raises(ValueError, match="no task has finished"):
        check_claims_across_tasks({"c": better()}, long.iloc[:0])


def test_across_tasks_depth_equivalence_cost_and_floor() -> None:
    deep = dict(l1=[0.5, 0.52, 0.51], l2=[0.6, 0.6, 0.62], l3=[0.7, 0.7, 0.71], l4=[0.8, 0.8, 0.8])
    spec = {"test": "preferred_depth", "runs": ["l1", "l2", "l3", "l4"]}
    row = across(spec, tasks_table(6, **deep))
    assert row["verdict"] == HOLDS and "best average rank l4 (1.00)" in row["measured"]
    assert across(spec | {"prefer": "shallow"}, tasks_table(6, **deep))["verdict"] == FAILS

    equivalent = {"test": "equivalent", "runs": ["a", "b"], "margin": 0.01}
    same = tasks_table(6, a=[0.800, 0.810, 0.790], b=[0.801, 0.809, 0.792])
    assert across(equivalent, same)["verdict"] == HOLDS

    cheaper = {"test": "cheaper", "runs": ["ap", "vp"]}
    long = tasks_table(3, ap=[0.8], vp=[0.7])
    one = pd.DataFrame({"run": ["ap", "vp"], "train_step_ms": [5.0, 10.0],
                        "peak_train_mem_mb": [50.0, 100.0]})  # fmt: skip
    row = across(cheaper, long, one)
    assert row["verdict"] == HOLDS and "one profile for every task" in row["measured"]
    per_task = pd.concat([one.assign(task=f"t{i}") for i in range(3)], ignore_index=True)
    per_task.loc[(per_task["task"] == "t2") & (per_task["run"] == "ap"), "train_step_ms"] = 40.0
    row = across(cheaper, long, per_task)  # time ratios 0.5, 0.5, 4.0: geometric mean 1.0
    assert row["estimate"] == pytest.approx(1.0) and row["holds_on"] == "2 of 3"
    assert "train_step_ms ×1.00" in row["measured"] and row["verdict"] == UNCLEAR

    floor = {"test": "at_least", "runs": ["pgn"], "metric": "rgb", "min": 0.99}
    long = tasks_table(3, pgn=[0.8, 0.8, 0.8])
    long["rgb"] = 0.999
    assert across(floor, long)["verdict"] == HOLDS


def test_across_tasks_markdown() -> None:
    long = tasks_table(4, ap=[0.80, 0.82, 0.81], vp=[0.70, 0.71, 0.69])
    table = check_claims_across_tasks({"c": better() | {"text": "AP beats VP"}}, long)
    markdown = claims_across_tasks_markdown(table)
    assert "| AP beats VP | ap, vp | t0: holds; t1: holds; t2: holds; t3: holds |" in markdown
    assert "with 4 tasks its smallest possible two-sided p is 0.125" in markdown
