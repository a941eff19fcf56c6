"""Figures of the comparison: accuracy vs a cost (trainable parameters, throughput, training
time) with intervals over seeds, training curves per method family, a run's confusion matrix,
reliability diagrams.

Uses matplotlib's non-interactive Agg backend through the object API (no pyplot state), so
it runs headless and in worker threads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from visprompt.evaluation.pareto import pareto_front
from visprompt.methods import CONFIGS


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


#: The marker of each method family (the family is the method's: `MethodConfig.family`);
#: "X" for any other.
MARKERS = {
    "input-space prompts": "o",
    "token prompts": "s",
    "activation prompts": "^",
    "baselines": "D",
}
OTHER_FAMILY = "other"
_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def family(method: str) -> str:
    """The family `method` declares (OTHER_FAMILY for a name no method has)."""
    return CONFIGS[method].family if method in CONFIGS else OTHER_FAMILY


def _place_labels(ax: Any, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str]) -> None:
    """Annotate each point with its label at the first nearby spot that overlaps nothing.

    Greedy in display space: candidate offsets around the point, growing outwards; a label
    far from its point gets a thin leader line.
    """
    fig = ax.figure
    fig.canvas.draw()  # fixes the limits and layout so data -> pixels is final
    to_px = ax.transData.transform
    scale = fig.dpi / 72.0
    height = 7 * 1.25 * scale
    points = [tuple(to_px((x, y))) for x, y in zip(xs, ys, strict=True)]
    taken = [(px - 4, py - 4, px + 4, py + 4) for px, py in points]
    frame = ax.get_window_extent()
    steps = [(5, 2), (5, -12), (-5, 2), (-5, -12), (5, 12), (-5, 12), (5, -22), (-5, -22)]
    steps += [(dx, dy) for r in range(2, 7) for dx in (8, -8) for dy in (10 * r, -10 * r)]
    for (px, py), label in sorted(zip(points, labels, strict=True), key=lambda t: -t[0][1]):
        width = 0.6 * 7 * scale * len(label)
        chosen = steps[-1]
        for dx, dy in steps:
            x0 = px + dx if dx > 0 else px + dx - width
            box = (x0, py + dy, x0 + width, py + dy + height)
            inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1]
            if (
                inside
                and box[3] <= frame.y1
                and not any(
                    box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3]
                    for t in taken
                )
            ):
                chosen = (dx, dy)
                taken.append(box)
                break
        dx, dy = chosen
        far = abs(dy) > 12
        ax.annotate(
            label,
            ax.transData.inverted().transform((px, py)),
            xytext=(dx / scale, dy / scale),
            textcoords="offset points",
            ha="left" if dx > 0 else "right",
            va="bottom",
            fontsize=7,
            arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"} if far else None,
        )


def tradeoff_figure(
    table: pd.DataFrame,
    x: str,
    *,
    x_label: str,
    title: str,
    log_x: bool = False,
    x_lower_better: bool = True,
    num_classes: int | None = None,
) -> Figure:
    """Test top-1 (%, mean over seeds with its 95 % interval) against a cost `x`.

    `table` has one row per run with `run`, `method`, `backbone`, `x` and `top1_mean` (plus
    `top1_ci_low`/`top1_ci_high` for error bars). Markers tell method families apart,
    colours backbones; the dashed line is chance (1 / `num_classes`), a dotted line per
    backbone its linear probe, and the red step line the Pareto front.
    """
    data = table.dropna(subset=[x, "top1_mean"]).reset_index(drop=True)
    if log_x:
        data = data[data[x] > 0].reset_index(drop=True)
    fig = _figure(8, 5.2)
    ax = fig.add_subplot()
    colours = {b: _COLOURS[i % len(_COLOURS)] for i, b in enumerate(sorted(set(data["backbone"])))}
    y = 100 * data["top1_mean"]
    low = 100 * data.get("top1_ci_low", data["top1_mean"])
    high = 100 * data.get("top1_ci_high", data["top1_mean"])
    yerr = [(y - low).fillna(0).clip(lower=0), (high - y).fillna(0).clip(lower=0)]
    families = [family(m) for m in data["method"]]
    for i in range(len(data)):
        ax.errorbar(
            data.at[i, x],
            y[i],
            yerr=[[yerr[0][i]], [yerr[1][i]]],
            fmt=MARKERS.get(families[i], "X"),
            color=colours[data.at[i, "backbone"]],
            markersize=6,
            capsize=2,
            elinewidth=0.8,
        )
    if len(data):
        mask = pareto_front(data.assign(_y=y), x, "_y", cost_lower=x_lower_better)
        front = data[mask].assign(_y=y[mask]).sort_values(x)
        ax.step(
            front[x], front["_y"], where="post" if x_lower_better else "pre",
            color="tab:red", lw=1, alpha=0.6, zorder=0,
        )  # fmt: skip
    handles = []
    for backbone, colour in colours.items():
        probe = data[(data["backbone"] == backbone) & (data["method"] == "linear_probe")]
        if len(probe):
            handles.append(
                ax.axhline(100 * probe["top1_mean"].max(), color=colour, ls=":", lw=1,
                           label=f"linear probe ({backbone})")
            )  # fmt: skip
    if num_classes:
        handles.append(ax.axhline(100 / num_classes, color="0.4", ls="--", lw=1, label="chance"))
    if log_x:
        ax.set_xscale("log")
    ax.margins(x=0.1, y=0.08)  # room for the labels of the outermost points
    ax.set_xlabel(x_label)
    ax.set_ylabel("test top-1 (%), mean ± 95 % CI over seeds")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    _legends(ax, sorted(set(families)), colours, handles)
    _place_labels(ax, data[x].tolist(), y.tolist(), data["run"].tolist())
    return fig


def _legends(ax: Any, families: list[str], colours: dict[str, str], lines: list[Any]) -> None:
    marks = [
        Line2D([], [], ls="", marker=MARKERS.get(f, "X"), color="0.2", label=f) for f in families
    ]
    marks += [
        Line2D([], [], ls="", marker="o", color=c, label=f"backbone {b}")
        for b, c in colours.items()
    ]
    marks += [Line2D([], [], color="tab:red", alpha=0.6, label="Pareto front"), *lines]
    ax.legend(handles=marks, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def accuracy_vs_params_figure(table: pd.DataFrame, num_classes: int | None = None) -> Figure:
    """Test top-1 against trainable parameters (log x): `tradeoff_figure` of the comparison."""
    return tradeoff_figure(
        table, "trainable_params", x_label="trainable parameters (log scale)",
        title="Accuracy vs trainable parameters", log_x=True, num_classes=num_classes,
    )  # fmt: skip


def training_curves_figure(
    histories: Mapping[tuple[str, int], Sequence[Mapping[str, Any]]], table: pd.DataFrame
) -> Figure:
    """Training loss and validation top-1 per epoch: one row of panels per method family.

    Each run is one colour within its family's panels: the line is the mean over seeds, the
    band spans the seeds' min to max. Each panel's x-axis spans its own runs' epochs.
    """
    methods = dict(zip(table["run"], table["method"], strict=True))
    by_family: dict[str, list[str]] = {}
    for run in table["run"]:
        by_family.setdefault(family(methods[run]), []).append(run)
    fig = _figure(11, 2.6 * max(1, len(by_family)))
    axes = fig.subplots(max(1, len(by_family)), 2, squeeze=False)
    for (name, runs), (loss_ax, acc_ax) in zip(sorted(by_family.items()), axes, strict=False):
        for i, run in enumerate(sorted(runs)):
            colour = f"C{i % 10}"
            style = "-" if i < 10 else "--"
            seeds = [h for (r, _), h in sorted(histories.items()) if r == run]
            for ax, key, scale in ((loss_ax, "train_loss", 1), (acc_ax, "val_top1", 100)):
                frame = pd.DataFrame(
                    [{"epoch": row["epoch"], "v": scale * row[key]} for h in seeds for row in h]
                ).groupby("epoch")["v"]
                mean, lo, hi = frame.mean(), frame.min(), frame.max()
                ax.plot(mean.index, mean, style, color=colour, lw=1.2, label=run)
                ax.fill_between(mean.index, lo, hi, color=colour, alpha=0.15, lw=0)
        loss_ax.set(ylabel="training loss", yscale="log", title=f"{name}: training loss")
        acc_ax.set(ylabel="val top-1 (%)", title=f"{name}: validation top-1")
        acc_ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        for ax in (loss_ax, acc_ax):
            ax.grid(True, alpha=0.3)
            ax.set_xlabel("epoch")
    return fig


def confusion_figure(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str
) -> Figure:
    """One run's row-normalised confusion matrix (true class per row), readable on its own:
    cells at least 0.45 inch, the class names on both axes, each cell's percentage written
    in it (none for empty cells), the test images per class beside the rows."""
    counts = pd.DataFrame(confusion).to_numpy()
    if counts.ndim != 2 or counts.shape != (len(classes), len(classes)):
        raise ValueError(
            f"confusion_figure: a {len(classes)}x{len(classes)} matrix for {len(classes)} "
            f"classes, got shape {counts.shape}"
        )
    n = len(classes)
    support = counts.sum(axis=1)
    rates = counts / support[:, None].clip(min=1)
    side = max(4.0, 0.45 * n + 1.5)
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    for (row, col), rate in pd.DataFrame(rates).stack().items():
        if counts[row, col]:
            colour = "white" if rate > 0.5 else "black"
            ax.text(col, row, f"{100 * rate:.0f}", ha="center", va="center", fontsize=8,
                    color=colour)  # fmt: skip
    names = [str(c) for c in classes]
    slanted = {"rotation": 45, "ha": "right"} if n > 6 else {}
    ax.set_xticks(range(n), labels=names, **slanted)
    ax.set_yticks(range(n), labels=[f"{c} ({int(k)})" for c, k in zip(names, support, strict=True)])
    ax.set(xlabel="predicted class", ylabel="true class (test images)", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of the true class")
    return fig


def reliability_figure(tables: Mapping[str, Sequence[Mapping[str, float]]], title: str) -> Figure:
    """Reliability diagram: accuracy against mean confidence per confidence bin, one line per
    entry of `tables` (`calibration.reliability_table`; the legend carries each ECE), the
    diagonal being perfect calibration. Below the diagonal: overconfident."""
    if not tables:
        raise ValueError("reliability_figure: no reliability table given")
    fig = _figure(6.4, 5.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfectly calibrated")
    for index, (name, rows) in enumerate(tables.items()):
        total = sum(r["count"] for r in rows) or 1
        ece = sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / total
        ax.plot(
            [r["confidence"] for r in rows],
            [r["accuracy"] for r in rows],
            marker="o", color=_COLOURS[index % len(_COLOURS)], ms=4, lw=1,
            label=f"{name} (ECE {100 * ece:.1f} %)",
        )  # fmt: skip
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="confidence (mean max probability in the bin)",
           ylabel="accuracy in the bin", title=title)  # fmt: skip
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
