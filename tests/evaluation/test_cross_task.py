"""Cross-task statistics on small known tables: each against scipy or a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from visprompt.evaluation import cross_task as ct


def long_table(means: dict[str, dict[str, float]], spread: float = 0.0) -> pd.DataFrame:
    """task -> run -> mean; three seeds per cell at mean - spread, mean, mean + spread
    (the same offsets for every run, so paired differences are exact)."""
    rows = [
        {"task": task, "run": run, "seed": seed, "top1": mean + (seed - 1) * spread}
        for task, runs in means.items()
        for run, mean in runs.items()
        for seed in range(3)
    ]
    return pd.DataFrame(rows)


#: 4 tasks x 3 runs with one tie (t1: b = c); ranks worked out by hand below.
MEANS = {
    "t1": {"a": 0.9, "b": 0.8, "c": 0.8},
    "t2": {"a": 0.7, "b": 0.9, "c": 0.8},
    "t3": {"a": 0.95, "b": 0.85, "c": 0.6},
    "t4": {"a": 0.8, "b": 0.7, "c": 0.75},
}


def test_per_task_means_and_intervals_reuse_the_seed_statistics() -> None:
    long = long_table({"t1": {"a": 0.5}, "t2": {"a": 0.7}}, spread=0.1)
    table = ct.per_task_table(long)
    row = table[table["task"] == "t1"].iloc[0]
    s = stats.t.interval(0.95, 2, loc=0.5, scale=0.1 / math.sqrt(3))
    assert row["n_seeds"] == 3 and row["mean"] == pytest.approx(0.5)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(s)


def test_average_ranks_share_ties() -> None:
    matrix = ct.task_matrix(long_table(MEANS))
    # t1: a 1, b 2.5, c 2.5; t2: b 1, c 2, a 3; t3: a 1, b 2, c 3; t4: a 1, c 2, b 3
    expected = {"a": (1 + 3 + 1 + 1) / 4, "b": (2.5 + 1 + 2 + 3) / 4, "c": (2.5 + 2 + 3 + 2) / 4}
    assert ct.average_ranks(matrix).to_dict() == pytest.approx(expected)
    assert ct.mean_over_tasks(matrix)["a"] == pytest.approx((0.9 + 0.7 + 0.95 + 0.8) / 4)
    # lower is better (an error rate): the ranks turn around
    assert ct.average_ranks(matrix, higher_is_better=False)["a"] == pytest.approx(4 - 1.5)


def test_friedman_matches_scipy_and_the_rank_formula() -> None:
    means = {f"t{i}": {"a": 0.9 - 0.01 * i, "b": 0.8, "c": 0.7 + 0.01 * (i % 2)} for i in range(5)}
    means["t4"] = {"a": 0.7, "b": 0.9, "c": 0.8}  # no ties, so the textbook formula is exact
    matrix = ct.task_matrix(long_table(means))
    result = ct.friedman(matrix)
    scipy_result = stats.friedmanchisquare(matrix["a"], matrix["b"], matrix["c"])
    assert result.statistic == pytest.approx(scipy_result.statistic)
    assert result.p_value == pytest.approx(scipy_result.pvalue)
    n, k = matrix.shape
    ranks = ct.average_ranks(matrix).to_numpy()
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(ranks**2) - k * (k + 1) ** 2 / 4)
    assert result.statistic == pytest.approx(chi2)
    assert (result.n_tasks, result.n_runs) == (5, 3)
    with pytest.raises(ValueError, match="at least 3 runs"):
        ct.friedman(matrix[["a", "b"]])


def test_nemenyi_cd_uses_demsars_q_values() -> None:
    # Demšar (2006), table 5(a), alpha 0.05: q for k = 2, 3, 5, 10
    for k, q in ((2, 1.960), (3, 2.343), (5, 2.728), (10, 3.164)):
        n = 4
        assert ct.nemenyi_cd(k, n) == pytest.approx(q * math.sqrt(k * (k + 1) / (6 * n)), abs=1e-3)
    assert ct.nemenyi_cd(3, 4) == pytest.approx(1.657, abs=1e-3)  # 2.343 * sqrt(12 / 24)
    assert ct.nemenyi_cd(3, 4, alpha=0.10) < ct.nemenyi_cd(3, 4)
    with pytest.raises(ValueError, match=">= 2 runs and tasks"):
        ct.nemenyi_cd(3, 1)


def test_cliques_join_runs_closer_than_the_cd() -> None:
    ranks = pd.Series({"c": 3.0, "a": 1.0, "d": 3.2, "b": 1.5})
    assert ct.cliques(ranks, 1.0) == [["a", "b"], ["c", "d"]]
    # a-c differ by exactly the CD: significant, so a is only with b
    assert ct.cliques(ranks, 2.0) == [["a", "b"], ["b", "c", "d"]]
    assert ct.cliques(ranks, 0.1) == []
    assert ct.cliques(ranks, 5.0) == [["a", "b", "c", "d"]]


def test_holm_step_down() -> None:
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06
    assert ct.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert ct.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    # not Benjamini-Hochberg (scipy's false_discovery_control): that one is less strict
    bh = stats.false_discovery_control([0.01, 0.04, 0.03])
    assert np.all(bh <= ct.holm([0.01, 0.04, 0.03])) and not np.allclose(bh, [0.03, 0.06, 0.06])


def test_wilcoxon_against_baselines_matches_scipy_and_is_holm_corrected() -> None:
    # x beats lp on all 7 tasks; y alternates around it
    means = {f"t{i}": {"lp": 0.5 + 0.02 * i, "x": 0.6 + 0.03 * i,
                       "y": 0.5 + 0.02 * i + (0.01 if i % 2 else -0.012)}
             for i in range(7)}  # fmt: skip
    matrix = ct.task_matrix(long_table(means))
    table = ct.wilcoxon_vs_baselines(matrix, ["lp"]).set_index("run")
    for run in ("x", "y"):
        expected = stats.wilcoxon(matrix[run] - matrix["lp"])
        assert table.at[run, "p_value"] == pytest.approx(expected.pvalue)
        assert table.at[run, "statistic"] == pytest.approx(expected.statistic)
    assert list(table["p_holm"]) == pytest.approx(ct.holm(table["p_value"]))
    assert table.at["x", "p_value"] == pytest.approx(2 / 2**7)  # exact: 7 of 7 tasks better
    assert table.at["x", "p_holm"] == pytest.approx(2 * 2 / 2**7)  # the smaller of 2 p-values
    assert table.at["x", "median_diff"] > 0 and bool(table.at["x", "significant"])
    assert not table.at["y", "significant"]
    assert ct.wilcoxon([0.0, 0.0]) == (0.0, 1.0)
    with pytest.raises(ValueError, match="baselines"):
        ct.wilcoxon_vs_baselines(matrix, ["ff"])


def test_win_tie_loss_uses_the_paired_test_per_task() -> None:
    long = long_table(
        {"t1": {"lp": 0.5, "x": 0.6}, "t2": {"lp": 0.7, "x": 0.6}, "t3": {"lp": 0.5, "x": 0.5}},
        spread=0.05,
    )
    # t3: x's seeds scatter around lp's: not significant, a tie
    long.loc[(long["task"] == "t3") & (long["run"] == "x"), "top1"] = [0.52, 0.44, 0.55]
    table = ct.win_tie_loss(long, ["lp"]).iloc[0]
    assert (table["wins"], table["ties"], table["losses"]) == (1, 1, 1)


def test_errors_name_what_is_missing() -> None:
    long = long_table({"t1": {"a": 0.5, "b": 0.6}, "t2": {"a": 0.7}})
    with pytest.raises(ValueError, match="missing: b on t2"):
        ct.task_matrix(long)
    with pytest.raises(ValueError, match="at least 2 tasks"):
        ct.task_matrix(long_table({"t1": {"a": 0.5, "b": 0.6}}))
    with pytest.raises(ValueError, match=r"runs \['zz'\] are on no task"):
        ct.task_matrix(long, runs=["a", "zz"])
    with pytest.raises(ValueError, match="no column"):
        ct.per_task_table(long.drop(columns="task"))


def test_report_tables_markdown_and_cd_diagram(tmp_path) -> None:
    long = long_table(MEANS | {"t5": {"a": 0.9, "b": 0.6, "c": 0.5}}, spread=0.01)
    long = long.replace({"run": {"a": "full_finetune", "b": "linear_probe", "c": "vp"}})
    report = ct.cross_task_report(long)
    table = report["table"].set_index("run")
    assert list(table.index) == ["full_finetune", "linear_probe", "vp"]  # best rank first
    assert table.at["vp", "linear_probe_wtl"] == "1/1/3"  # t1 tie, t4 win
    assert table.at["full_finetune", "full_finetune_wtl"] == ""
    assert report["cd"] == pytest.approx(ct.nemenyi_cd(3, 5))
    markdown = report["markdown"]
    assert "Friedman test over 5 tasks and 3 runs" in markdown and "| vp  " in markdown
    texts = [t.get_text() for t in report["figure"].axes[0].texts]
    assert f"CD = {report['cd']:.2f}" in texts
    assert any(t.startswith("full_finetune (") for t in texts)
    report["figure"].savefig(tmp_path / "cd.png")
    assert (tmp_path / "cd.png").stat().st_size > 0


def test_report_can_rank_over_the_tasks_every_run_has() -> None:
    means = MEANS | {"own": {"a": 0.9, "b": 0.6}}  # c (a ViT, say) is not run on its own data
    long = long_table(means, spread=0.01)
    with pytest.raises(ValueError, match="missing: c on own"):
        ct.cross_task_report(long, baselines=["b"])
    report = ct.cross_task_report(long, baselines=["b"], drop_incomplete_tasks=True)
    assert report["left_out"] == {"own": ["c"]}
    assert report["table"]["n_tasks"].tolist() == [4, 4, 4]
    assert "own" in set(report["per_task"]["task"])  # its means are still shown
    assert "Left out of the cross-task statistics: own (no c)." in report["markdown"]
    kept, left_out = ct.complete_tasks(long, ["a", "b"])
    assert left_out == {} and len(kept) == len(long)  # a and b share every task
