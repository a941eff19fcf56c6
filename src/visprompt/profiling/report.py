"""Efficiency tables and benchmark curves: Markdown renderings and ratio plots."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def to_markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub Markdown table; floats with `digits` significant decimals, ints as ints."""
    # object dtype keeps ints as ints when every column is numeric (tabulate sees one array)
    table = frame.astype(object).to_markdown(index=False, floatfmt=f".{digits}g", intfmt=",")
    return table + "\n"


#: The efficiency .md's columns: (CSV column, header with unit, format).
MARKDOWN_COLUMNS = (
    ("run", "run", "{}"),
    ("backbone", "backbone", "{}"),
    ("trainable_params", "trainable params", "{:,.0f}"),
    ("gflops", "GFLOPs / image", "{:.3f}"),
    ("train_step_ms", "train step (ms)", "{:.1f}"),
    ("throughput_ips", "throughput (img/s)", "{:,.0f}"),
    ("latency_p50_ms", "latency p50 (ms)", "{:.2f}"),
    ("peak_train_mem_mb", "peak train mem (MB)", "{:.0f}"),
    ("train_time_s", "train time / seed (s)", "{:.1f}"),
    ("top1_mean", "test top-1 (%)", "{:.1%}"),
)


def efficiency_markdown(table: pd.DataFrame) -> str:
    """The efficiency table for people: a handful of columns with units (the CSV has all);
    accuracy is the seed mean, blank where there is none (the bare backbone)."""
    shown = pd.DataFrame(
        {
            header: [
                "" if pd.isna(v) else fmt.format(v).removesuffix("%")
                for v in table.get(column, pd.Series([None] * len(table)))
            ]
            for column, header, fmt in MARKDOWN_COLUMNS
        }
    )
    return shown.to_markdown(index=False, disable_numparse=True) + "\n"


def plot_curve(
    frame: pd.DataFrame, x: str, ys: Sequence[str], *, title: str, reference: Sequence[tuple]
) -> plt.Figure:
    """Lines of several `ys` against `x`, plus reference points (x, y, label) as crosses."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for y in ys:
        ax.plot(frame[x], frame[y], "o-", label=y)
    for rx, ry, rlabel in reference:
        ax.plot([rx], [ry], "kx", markersize=9)
        ax.annotate(rlabel, (rx, ry), fontsize=8, xytext=(4, -10), textcoords="offset points")
    ax.set_xlabel(x)
    ax.set_ylabel("ratio to p = 0")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
