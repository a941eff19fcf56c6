"""The comparison over seeds: per-seed rows, per-run intervals, paired significance, figures."""

from __future__ import annotations

import math

import pytest
from matplotlib.figure import Figure

from visprompt.evaluation import (
    COLUMNS,
    SIGNIFICANCE_COLUMNS,
    accuracy_vs_params_figure,
    comparison_table,
    seed_table,
    significance_table,
    to_markdown,
    training_curves_figure,
)
from visprompt.evaluation.statistics import paired_test, seed_interval

TOP1 = {  # run -> method, backbone, trainable params, top-1 per seed 0, 1, 2
    "lp": ("linear_probe", "vit", 10, (0.60, 0.62, 0.61)),
    "ft": ("full_finetune", "vit", 1000, (0.90, 0.80, 0.85)),
    "vpt": ("vpt", "vit", 100, (0.88, 0.84, 0.83)),
    "ap_cnn": ("ap", "cnn", 50, (0.70, 0.72, 0.71)),
}


def summary(run: str, seed: int) -> dict:
    method, backbone, trainable, _ = TOP1[run]
    return {
        "run": run, "seed": seed, "method": method, "backbone": backbone,
        "trainable_params": trainable, "total_params": 1000, "train_time_s": 1.0 + seed,
        "epochs": 2, "best_epoch": 1, "best_val_top1": 0.5 + 0.1 * seed,
    }  # fmt: skip


def metrics(run: str, seed: int) -> dict:
    top1 = TOP1[run][3][seed]
    return {"top1": top1, "top5": 1.0, "macro_f1": top1 - 0.1, "ece": 0.1}


@pytest.fixture
def seeds():
    keys = [(run, seed) for run in TOP1 for seed in (0, 1, 2)]
    return seed_table({k: summary(*k) for k in keys}, {k: metrics(*k) for k in keys})


def test_seed_rows_and_run_means_with_t_intervals(seeds) -> None:
    assert len(seeds) == 12 and seeds.loc[0, ["run", "seed"]].tolist() == ["ap_cnn", 0]
    table = comparison_table(seeds)
    assert tuple(table.columns) == COLUMNS
    assert table["run"].tolist() == ["ft", "vpt", "ap_cnn", "lp"]  # by mean top-1
    ft = table.iloc[0]
    expected = seed_interval([0.90, 0.80, 0.85])
    assert ft["n_seeds"] == 3 and ft["top1_mean"] == pytest.approx(0.85)
    assert (ft["top1_std"], ft["top1_ci_low"], ft["top1_ci_high"]) == pytest.approx(
        (0.05, expected.ci_low, expected.ci_high)
    )
    assert ft["macro_f1_mean"] == pytest.approx(0.75)
    assert ft["train_time_s"] == pytest.approx(2.0) and ft["val_top1_mean"] == pytest.approx(0.6)


def test_significance_against_the_best_and_the_backbones_linear_probe(seeds) -> None:
    table = comparison_table(seeds)
    sig = significance_table(seeds, table)
    assert tuple(sig.columns) == SIGNIFICANCE_COLUMNS
    pairs = {(r.run, r.reference_kind): r for r in sig.itertuples()}
    # every run but the best against ft; vit runs but lp against lp; cnn has no probe
    assert set(pairs) == {
        ("vpt", "best"), ("ap_cnn", "best"), ("lp", "best"),
        ("ft", "linear_probe"), ("vpt", "linear_probe"),
    }  # fmt: skip
    vpt = pairs[("vpt", "best")]
    expected = paired_test([0.88, 0.84, 0.83], [0.90, 0.80, 0.85])
    assert (vpt.mean_diff, vpt.ci_low, vpt.ci_high, vpt.p_value) == pytest.approx(
        (expected.mean_diff, expected.ci_low, expected.ci_high, expected.p_value)
    )
    assert not vpt.distinguishable  # 0 inside its interval
    assert pairs[("lp", "best")].distinguishable  # 24 points below on every seed
    markdown = to_markdown(table, sig)
    rows = {line.split("|")[1].strip(): line for line in markdown.splitlines()[2:6]}
    assert "≈ best" in rows["vpt"] and "≈ best" not in rows["lp"] and "| best " in rows["ft"]
    assert "85.0 ± " in rows["ft"] and "top1 % (95 % CI)" in markdown


def test_runs_are_paired_on_the_seeds_they_share_and_one_seed_is_not_an_error() -> None:
    keys = [("a", 0), ("a", 1), ("b", 1), ("c", 5)]
    rows = {k: summary("lp", 0) | {"run": k[0]} for k in keys}
    tests = {k: metrics("lp", 0) | {"top1": 0.5 + 0.1 * i} for i, k in enumerate(keys)}
    seeds = seed_table(rows, tests)
    table = comparison_table(seeds)
    assert table["run"].tolist() == ["c", "b", "a"]
    assert math.isnan(table.iloc[0]["top1_ci_low"])  # one seed: no interval
    sig = significance_table(seeds, table).set_index(["run", "reference_kind"])
    assert sig.loc[("a", "best"), "n_pairs"] == 0  # no seed in common with c
    assert "≈ best" in to_markdown(table, significance_table(seeds, table))


def test_hparams_source_passes_through_when_present() -> None:
    key = ("lp", 0)
    seeds = seed_table({key: summary(*key) | {"hparams_source": "tuned"}}, {key: metrics(*key)})
    table = comparison_table(seeds)
    assert table.loc[0, "hparams_source"] == "tuned"
    assert "| tuned " in to_markdown(table)


def test_missing_evaluation_is_an_error() -> None:
    with pytest.raises(ValueError, match="evaluate every trained seed"):
        seed_table({("lp", 0): summary("lp", 0)}, {})


def test_figures_are_built(seeds) -> None:
    table = comparison_table(seeds)
    fig = accuracy_vs_params_figure(table, num_classes=10)
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and ax.get_xscale() == "log"
    assert {t.get_text() for t in ax.texts} == set(TOP1)  # one label per run
    labels = [t.get_label() for t in ax.get_legend().legend_handles]
    assert {"chance", "linear probe (vit)", "Pareto front", "baselines"} <= set(labels)
    boxes = [t.get_window_extent() for t in ax.texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    history = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_top1": 0.5} for e in range(3)]
    curves = training_curves_figure({(r, s): history for r, s in seeds[["run", "seed"]].values},
                                    table)  # fmt: skip
    assert len(curves.axes) == 2 * 3  # baselines, token prompts, activation prompts


def test_pgn_rgb_agreement_passes_through_to_the_tables() -> None:
    keys = [(run, seed) for run in ("lp", "vpt") for seed in (0, 1)]
    rgb = {("vpt", 0): 0.99, ("vpt", 1): 0.97}  # vpt stands in for a PGN run here
    extra = {k: {"rgb_agreement_uint8": v, "rgb_agreement": 1.0} for k, v in rgb.items()}
    seeds = seed_table(
        {k: summary(*k) for k in keys}, {k: metrics(*k) | extra.get(k, {}) for k in keys}
    )
    assert seeds.set_index(["run", "seed"]).loc[("vpt", 1), "rgb_agreement_uint8"] == 0.97
    assert seeds.set_index(["run", "seed"])["rgb_agreement"].isna().sum() == 2  # lp has none
    table = comparison_table(seeds).set_index("run")
    assert table.loc["vpt", "rgb_agreement_uint8_mean"] == pytest.approx(0.98)
    assert math.isnan(table.loc["lp", "rgb_agreement_uint8_mean"])
    markdown = to_markdown(comparison_table(seeds))
    assert "RGB/token agreement % (8-bit)" in markdown and "98.0" in markdown
