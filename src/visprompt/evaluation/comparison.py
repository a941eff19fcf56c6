"""The comparison across runs and seeds: per-seed rows, per-run means with 95 % t-intervals
(one seed is one sample), paired tests on shared seeds against the best run and the
backbone's linear probe, and Markdown."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from visprompt.evaluation.statistics import paired_test, seed_interval

#: Columns of comparison_seeds.csv: one row per (run, seed).
SEED_COLUMNS = ("run", "seed", "method", "backbone", "top1", "top5", "macro_f1", "ece",
    "trainable_params", "total_params", "trainable_pct", "train_time_s", "epochs",
    "best_epoch", "best_val_top1")  # fmt: skip

#: Metrics aggregated over seeds with mean, std and a 95 % t-interval.
INTERVAL_METRICS = ("top1", "macro_f1")

#: Column order of comparison.csv: one row per run (the contract in docs/architecture.md).
COLUMNS = ("run", "method", "backbone", "n_seeds",
    *(f"{m}_{s}" for m in INTERVAL_METRICS for s in ("mean", "std", "ci_low", "ci_high")),
    "top5_mean", "ece_mean", "val_top1_mean", "trainable_params", "total_params",
    "trainable_pct", "train_time_s", "epochs")  # fmt: skip

#: Columns of significance.csv: each run against a reference run, paired over seeds.
SIGNIFICANCE_COLUMNS = ("run", "reference", "reference_kind", "metric", "n_pairs",
    "mean_diff", "ci_low", "ci_high", "p_value", "distinguishable")  # fmt: skip

#: Test metrics with this prefix (PGN's RGB deployment, `prompt_inversion.deployment_metrics`)
#: are carried into the seed and comparison tables when a run has them.
RGB_PREFIX = "rgb_"

#: A difference counts as real when the paired test rejects "no difference" at this level.
ALPHA = 0.05


def seed_table(
    summaries: Mapping[tuple[str, int], Mapping[str, Any]],
    metrics: Mapping[tuple[str, int], Mapping[str, Any]],
) -> pd.DataFrame:
    """One row per (run, seed): its train summary joined with its test metrics (and
    `hparams_source`, `rgb_*` when present). A seed with only one of them is an error naming
    it, not a silent gap."""
    if set(summaries) != set(metrics):
        raise ValueError(
            f"(run, seed) with a train summary {sorted(summaries)} differ from those with test "
            f"metrics {sorted(metrics)}; evaluate every trained seed"
        )
    rows = []
    for (run, seed), s in summaries.items():
        m = metrics[(run, seed)]
        row = {
            "run": run,
            "seed": int(seed),
            "method": s["method"],
            "backbone": s["backbone"],
            "top1": m["top1"],
            "top5": m["top5"],
            "macro_f1": m["macro_f1"],
            "ece": m["ece"],
            "trainable_params": int(s["trainable_params"]),
            "total_params": int(s["total_params"]),
            "trainable_pct": 100.0 * s["trainable_params"] / s["total_params"],
            "train_time_s": s["train_time_s"],
            "epochs": int(s["epochs"]),
            "best_epoch": s.get("best_epoch"),
            "best_val_top1": s.get("best_val_top1"),
        }
        if "hparams_source" in s:
            row["hparams_source"] = s["hparams_source"]
        row |= {k: float(v) for k, v in m.items() if k.startswith(RGB_PREFIX)}
        rows.append(row)
    extra = ["hparams_source"] if any("hparams_source" in r for r in rows) else []
    extra += sorted({k for r in rows for k in r if k.startswith(RGB_PREFIX)})
    table = pd.DataFrame(rows, columns=[*SEED_COLUMNS, *extra])
    return table.sort_values(["run", "seed"], ignore_index=True)


def _rgb_columns(seeds: pd.DataFrame) -> list[str]:
    return [c for c in seeds.columns if c.startswith(RGB_PREFIX)]


def comparison_table(seeds: pd.DataFrame) -> pd.DataFrame:
    """One row per run from `seed_table`: means, stds and 95 % intervals; sorted by top-1 mean.

    Costs are the same for every seed of a run except the training time (its mean is shown).
    """
    rows = []
    for run, group in seeds.groupby("run", sort=False):
        first = group.iloc[0]
        row: dict[str, Any] = {
            "run": run,
            "method": first["method"],
            "backbone": first["backbone"],
            "n_seeds": len(group),
        }
        for metric in INTERVAL_METRICS:
            s = seed_interval(group[metric].tolist())
            row |= {
                f"{metric}_mean": s.mean,
                f"{metric}_std": s.std,
                f"{metric}_ci_low": s.ci_low,
                f"{metric}_ci_high": s.ci_high,
            }
        row |= {
            "top5_mean": group["top5"].mean(),
            "ece_mean": group["ece"].mean(),
            "val_top1_mean": group["best_val_top1"].astype(float).mean(),
            "trainable_params": int(first["trainable_params"]),
            "total_params": int(first["total_params"]),
            "trainable_pct": first["trainable_pct"],
            "train_time_s": group["train_time_s"].mean(),
            "epochs": int(group["epochs"].max()),
        }
        if "hparams_source" in group:
            row["hparams_source"] = ",".join(sorted(set(group["hparams_source"].astype(str))))
        row |= {f"{c}_mean": group[c].mean() for c in _rgb_columns(seeds)}
        rows.append(row)
    extra = ["hparams_source"] if "hparams_source" in seeds else []
    extra += [f"{c}_mean" for c in _rgb_columns(seeds)]
    table = pd.DataFrame(rows, columns=[*COLUMNS, *extra])
    return table.sort_values(["top1_mean", "run"], ascending=[False, True], ignore_index=True)


def _paired(seeds: pd.DataFrame, run: str, reference: str, metric: str) -> dict[str, Any]:
    a = seeds[seeds["run"] == run].set_index("seed")[metric]
    b = seeds[seeds["run"] == reference].set_index("seed")[metric]
    shared = sorted(set(a.index) & set(b.index))
    if not shared:
        nan = math.nan
        return {"n_pairs": 0, "mean_diff": nan, "ci_low": nan, "ci_high": nan, "p_value": nan}
    test = paired_test(a[shared].tolist(), b[shared].tolist())
    return {
        "n_pairs": test.n,
        "mean_diff": test.mean_diff,
        "ci_low": test.ci_low,
        "ci_high": test.ci_high,
        "p_value": test.p_value,
    }


def significance_table(
    seeds: pd.DataFrame, comparison: pd.DataFrame, metric: str = "top1"
) -> pd.DataFrame:
    """Each run against the best run (the first row) and its backbone's best `linear_probe`
    run, paired on seeds: `mean_diff` is run minus reference, `distinguishable` p < ALPHA."""
    rows = []
    best = comparison.iloc[0]["run"]
    probes = comparison[comparison["method"] == "linear_probe"].drop_duplicates("backbone")
    probe_of = dict(zip(probes["backbone"], probes["run"], strict=True))
    for _, row in comparison.iterrows():
        references = [(best, "best")]
        probe = probe_of.get(row["backbone"])
        if probe is not None:
            references.append((probe, "linear_probe"))
        for reference, kind in references:
            if reference == row["run"]:
                continue
            result = _paired(seeds, row["run"], reference, metric)
            p = result["p_value"]
            rows.append(
                {
                    "run": row["run"],
                    "reference": reference,
                    "reference_kind": kind,
                    "metric": metric,
                    **result,
                    "distinguishable": bool(not math.isnan(p) and p < ALPHA),
                }
            )
    return pd.DataFrame(rows, columns=list(SIGNIFICANCE_COLUMNS))


def _pct(value: float) -> str:
    return "" if pd.isna(value) else f"{100 * value:.1f}"


def _p_value(p: float) -> str:
    if pd.isna(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _mean_interval(row: pd.Series, metric: str) -> str:
    mean, low, high = row[f"{metric}_mean"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if pd.isna(low):
        return _pct(mean)
    return f"{_pct(mean)} ± {100 * (high - low) / 2:.1f}"


def to_markdown(comparison: pd.DataFrame, significance: pd.DataFrame | None = None) -> str:
    """A GitHub Markdown table: mean ± 95 % half-width in %, costs, and the test vs the best
    (`≈ best`: the paired test cannot tell the run from it)."""
    vs_best = {}
    if significance is not None and len(significance):
        rows = significance[significance["reference_kind"] == "best"]
        vs_best = {r["run"]: r for _, r in rows.iterrows()}
    best = comparison.iloc[0]["run"] if len(comparison) else None
    lines = []
    for _, row in comparison.iterrows():
        test = vs_best.get(row["run"])
        if row["run"] == best:
            mark, diff, p = "best", "", ""
        elif test is None:
            mark, diff, p = "", "", ""
        else:
            mark = "" if test["distinguishable"] else "≈ best"
            diff = f"{100 * test['mean_diff']:+.1f}"
            p = _p_value(test["p_value"])
        line = {
            "run": row["run"],
            "method": row["method"],
            "backbone": row["backbone"],
            "seeds": str(int(row["n_seeds"])),
            "top1 % (95 % CI)": _mean_interval(row, "top1"),
            "macro-F1 % (95 % CI)": _mean_interval(row, "macro_f1"),
            "Δ vs best (pts)": diff,
            "p": p,
            "vs best": mark,
            "trainable params": f"{int(row['trainable_params']):,}",
            "trainable %": f"{row['trainable_pct']:.2f}",
            "train time s": f"{row['train_time_s']:.1f}",
        }
        if "hparams_source" in row.index:
            line["hparams"] = str(row["hparams_source"])
        if "rgb_agreement_uint8_mean" in row.index:
            agree = row["rgb_agreement_uint8_mean"]
            line["RGB/token agreement % (8-bit)"] = "" if pd.isna(agree) else _pct(agree)
        lines.append(line)
    if not lines:
        return "(no runs)\n"
    table = pd.DataFrame(lines).to_markdown(index=False, disable_numparse=True)
    note = (
        f"\n\nMean over seeds ± half-width of the 95 % t-interval. `≈ best`: the paired t-test "
        f"over shared seeds cannot tell the run from the best (p ≥ {ALPHA}, or one seed).\n"
    )
    return table + note
