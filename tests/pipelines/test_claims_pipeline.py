"""claims node on tables written to a tmp dir; the project's checks name real runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from visprompt.evaluation.claims import HOLDS, NOT_RUN, TESTS
from visprompt.pipelines.claims.nodes import (
    report_claims,
    report_claims_across_tasks,
    report_suite,
)

CONF = Path(__file__).resolve().parents[2] / "conf" / "base"


def test_report_reads_the_tables_that_exist(tmp_path: Path) -> None:
    seeds = pd.DataFrame(
        {
            "run": ["ap"] * 3 + ["vp"] * 3,
            "seed": [0, 1, 2] * 2,
            "top1": [0.80, 0.82, 0.81, 0.70, 0.71, 0.69],
        }  # fmt: skip
    )
    (tmp_path / "exp_a").mkdir()
    seeds.to_csv(tmp_path / "exp_a" / "comparison_seeds.csv", index=False)
    efficiency = pd.DataFrame(
        {"run": ["ap", "vp"], "train_step_ms": [5.0, 10.0], "peak_train_mem_mb": [50.0, 99.0]}
    )
    params = {
        # {experiment}: the experiment's own folder (its name is the node's first argument)
        "seed_tables": [f"{tmp_path}/{{experiment}}/comparison_seeds.csv", f"{tmp_path}/none.csv"],
        "cost_tables": [str(tmp_path / "none.csv")],
        "checks": {
            "acc": {"text": "AP beats VP", "test": "better", "runs": ["ap", "vp"]},
            "cost": {"text": "AP is cheaper", "test": "cheaper", "runs": ["ap", "vp"]},
            "spt": {"test": "better", "runs": ["spt", "vp"], "recipe": "kedro run --x"},
        },
        "suite": "python -m visprompt.suite",
    }
    table, markdown = report_claims("exp_a", efficiency, params)
    assert list(table["verdict"]) == [HOLDS, HOLDS, NOT_RUN]
    other, _ = report_claims("exp_b", efficiency, params)  # another experiment: not its table
    assert other.iloc[0]["verdict"] == NOT_RUN
    assert "`kedro run --x` (one task) or `python -m visprompt.suite`" in table.iloc[2]["measured"]
    assert "| AP beats VP | ap, vp |" in markdown and "| AP is cheaper |" in markdown
    # the suite's: the same checks on its long table, per task and across tasks
    long = pd.concat([seeds.assign(task=t) for t in ("digits", "mnist5k")], ignore_index=True)
    across, markdown = report_claims_across_tasks(long, efficiency, params)
    assert list(across["holds_on"]) == ["2 of 2", "2 of 2", ""]
    assert list(across["verdict"]) == ["not distinguishable", HOLDS, NOT_RUN]
    assert "| AP beats VP | ap, vp | digits: holds; mnist5k: holds |" in markdown


def test_suite_report_ranks_over_complete_tasks_and_judges_the_claims() -> None:
    rows = [
        {"task": task, "run": run, "seed": seed, "top1": top1 + 0.01 * seed - 0.05 * t}
        for t, task in enumerate(["digits", "mnist5k", "fashion_mnist"])
        for run, top1 in {"linear_probe": 0.7, "ap": 0.8, "vp": 0.75}.items()
        for seed in range(3)
        if not (task == "fashion_mnist" and run == "vp")  # a ViT run skips its pretraining data
    ]
    checks = {"acc": {"text": "AP beats VP", "test": "better", "runs": ["ap", "vp"]}}
    suite = {"name": "offline", "baselines": ["linear_probe"]}
    per_task, table, markdown, figure, claims, claims_md = report_suite(
        pd.DataFrame(rows), suite, {"checks": checks, "suite": "python -m visprompt.suite"}
    )
    assert set(per_task["task"]) == {"digits", "mnist5k", "fashion_mnist"}
    assert table["run"].tolist() == ["ap", "vp", "linear_probe"] and set(table["n_tasks"]) == {2}
    assert table.set_index("run").at["ap", "linear_probe_wtl"] == "2/0/0"
    assert markdown.startswith("# Suite offline: every run across tasks")
    assert "Left out of the cross-task statistics: fashion_mnist (no vp)." in markdown
    assert "![critical-difference diagram](cd_diagram.png)" in markdown
    assert figure.axes and claims.iloc[0]["holds_on"] == "2 of 2"
    assert "| AP beats VP | ap, vp | digits: holds; mnist5k: holds |" in claims_md
    # one task finished so far: per-task means and claims, no ranks
    partial = pd.DataFrame(rows).query("task != 'mnist5k'")
    per_task, table, markdown, _, claims, _ = report_suite(partial, suite, {"checks": checks})
    assert set(per_task["task"]) == {"digits", "fashion_mnist"} and table.empty
    assert "need at least 2 tasks" in markdown and "fashion_mnist lacks vp" in markdown
    assert claims.iloc[0]["holds_on"] == "1 of 1"


def test_the_projects_checks_name_configured_runs() -> None:
    claims = yaml.safe_load((CONF / "parameters_claims.yml").read_text())["claims"]
    training = yaml.safe_load((CONF / "parameters_training.yml").read_text())["training"]
    adavipro = yaml.safe_load((CONF / "parameters_adavipro_report.yml").read_text())
    sweep = yaml.safe_load((CONF / "parameters_ap_layer_sweep.yml").read_text())
    recipes = CONF.parents[1] / "pipelines"
    recipe = yaml.safe_load((recipes / "imagenet_cnn.yml").read_text())
    # the suites' runs (recipes that declare `run.params.suite`: offline and GPU)
    loaded = [yaml.safe_load(p.read_text()) or {} for p in sorted(recipes.glob("*.yml"))]
    suites = [r for r in loaded if "suite" in ((r.get("run") or {}).get("params") or {})]
    one_task = (
        set(training["runs"])
        | set(recipe["run"]["params"]["training"]["runs"])
        | set(adavipro["adavipro_report"]["runs"])
        | set(sweep["ap_layer_sweep"]["runs"])
    )
    suite_runs = {run for s in suites for run in s["run"]["params"]["suite"]["runs"]}
    required = {
        "ap_beats_vp_cnn", "cnn_prefers_deep_ap", "ap_channel_after_norm_is_norm_tuning",
        "adavipro_beats_vp_p4", "spt_kmeans_beats_vpt", "ap_cheaper_than_vp",
        "pgn_rgb_matches_tokens", "cnn_prefers_deep_ap_lite0", "vit_prefers_shallow_ap_tiny",
        "ap_channel_after_norm_is_norm_tuning_vit", "adavipro_beats_vp",
        "ap_cheaper_than_vp_lite0", "spt_kmeans_beats_vpt_mae",
        "full_finetune_beats_linear_probe",
    }  # fmt: skip
    assert required <= set(claims["checks"])
    for name, check in claims["checks"].items():
        assert check["test"] in TESTS, name
        # a one-task check names a recipe's runs; the others may name the suite's
        known = one_task if check.get("across_tasks") is False else one_task | suite_runs
        assert set(check["runs"]) <= known, (name, set(check["runs"]) - known)
