"""Nodes of the ap_layer_sweep pipeline: the per-layer table and its plot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from visprompt.evaluation.statistics import seed_interval

#: Profiling columns carried into the sweep table (per run, measured once).
COSTS = ("train_step_ms", "peak_train_mem_mb", "train_step_ratio", "train_mem_ratio")


def is_layer_sweep(entry: Mapping[str, Any]) -> bool:
    """An AP run with a full (C×H×W or N×D) prompt: a point of the layer curve."""
    options = entry.get("options") or {}
    return entry["method"] == "ap" and options.get("granularity", "full") == "full"


def sweep_table(
    runs: Mapping[str, Mapping[str, Any]], profile: pd.DataFrame, *results: dict[str, Any]
) -> pd.DataFrame:
    """One row per sweep run and seed from (train_summary, test_metrics) pairs and the profile.

    `depth` is the run's position among its backbone's layer-sweep runs (config order,
    shallow -> deep); references (VP, norm tuning, AP-channel) have none.
    """
    if len(results) % 2:
        raise ValueError(f"expected (train_summary, test_metrics) pairs, got {len(results)}")
    names = list(runs)
    depth: dict[str, int] = {}
    for backbone in dict.fromkeys(runs[n]["backbone"] for n in names):
        sweep = [n for n in names if runs[n]["backbone"] == backbone and is_layer_sweep(runs[n])]
        depth |= {n: i for i, n in enumerate(sweep)}
    costs = profile.set_index("run")
    rows = []
    for summary, metrics in zip(results[0::2], results[1::2], strict=True):
        name = summary["run"]
        if name not in runs:
            raise ValueError(f"a result of run '{name}', which is not a sweep run {names}")
        options = runs[name].get("options") or {}
        rows.append(
            {
                "run": name,
                "seed": int(summary.get("seed", 0)),
                "method": runs[name]["method"],
                "backbone": runs[name]["backbone"],
                "layer": options.get("layer", ""),
                "granularity": options.get("granularity", ""),
                "depth": depth.get(name, np.nan),
                "top1": float(metrics["top1"]),
                "best_val_top1": float(summary["best_val_top1"]),
                "trainable_params": int(summary["trainable_params"]),
                "train_time_s": float(summary["train_time_s"]),
                **{c: float(costs.at[name, c]) if name in costs.index else np.nan for c in COSTS},
            }
        )
    return pd.DataFrame(rows)


def _by_run(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean top-1 with its 95 % half-width (0 for one seed) and the costs, one row per run."""
    out = []
    for _, group in rows.groupby("run", sort=False):
        s = seed_interval(group["top1"].tolist())
        half = 0.0 if np.isnan(s.ci_low) else (s.ci_high - s.ci_low) / 2
        out.append(group.iloc[0].to_dict() | {"top1": s.mean, "half": half, "n": s.n})
    return pd.DataFrame(out).infer_objects()


def sweep_figure(table: pd.DataFrame) -> Figure:
    """Per backbone: test top-1 (mean ± 95 % CI over seeds) and training-step time vs the AP
    layer, shallow -> deep; the CNN references as dashed lines."""
    runs = _by_run(table)
    backbones = list(dict.fromkeys(runs["backbone"]))
    fig = Figure(figsize=(9.5, 3.2 * max(len(backbones), 1)), layout="constrained")
    axes = fig.subplots(max(len(backbones), 1), 2, squeeze=False)
    for row, backbone in enumerate(backbones):
        mine = runs[runs["backbone"] == backbone]
        sweep = mine[mine["depth"].notna()].sort_values("depth")
        refs = mine[mine["depth"].isna()]
        acc, cost = axes[row]
        x = np.arange(len(sweep))
        acc.errorbar(x, 100 * sweep["top1"], yerr=100 * sweep["half"], marker="o", capsize=3,
                     label=f"AP ({backbone})")  # fmt: skip
        cost.plot(x, sweep["train_step_ms"], marker="s", color="tab:orange", label="AP")
        for i, (_, ref) in enumerate(refs.iterrows()):
            style = {"color": f"C{i + 2}", "linestyle": "--", "label": ref["run"]}
            acc.axhline(100 * ref["top1"], **style)
            if not np.isnan(ref["train_step_ms"]):
                cost.axhline(ref["train_step_ms"], **style)
        for ax in (acc, cost):
            ax.set_xticks(x, sweep["layer"].tolist())
            ax.set_xlabel("AP layer (shallow → deep)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        acc.set_ylabel("test top-1 (%)")
        cost.set_ylabel("training step (ms, median)")
        acc.set_title(f"{backbone}: accuracy per AP layer")
        cost.set_title(f"{backbone}: training-step cost per AP layer")
    return fig
