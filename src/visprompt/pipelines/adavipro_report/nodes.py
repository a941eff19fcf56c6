"""Nodes of the adavipro_report pipeline: where AdaViPro puts its prompt, and the pad sweep."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from visprompt import backbones, methods
from visprompt.data.shards import read_classes, read_split
from visprompt.data.transforms import denormalize
from visprompt.training import Preprocess

COLUMNS = ["image", "edge map |∇²x|", "chosen regions", "prompted input"]


def _to_display(x: torch.Tensor, preprocess: Preprocess) -> np.ndarray:
    """Normalised (B, 3, H, W) -> [0, 1] (B, H, W, 3) for imshow."""
    x = denormalize(x, preprocess.mean, preprocess.std)
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def region_figure(
    artifact_dir: str,
    train_summary: dict[str, Any],
    backbone_specs: dict[str, dict[str, Any]],
    shards: str,
    params: Mapping[str, Any],
) -> Figure:
    """For a few test images: the image, its edge map, the regions the trained mask generator
    chose (argmax, as at inference) over the image, and the prompted input x + P ⊙ mask."""
    spec = backbone_specs[train_summary["backbone"]]
    model = methods.load(artifact_dir, backbones.from_spec(spec)).eval()
    if model.name != "adavipro":
        raise ValueError(
            f"adavipro_report.figure_run '{train_summary['run']}' is a '{model.name}' run; "
            "choose an adavipro run in parameters_adavipro_report.yml"
        )
    images, labels = read_split(shards, "test")
    count = min(int(params["figure_images"]), len(labels))
    rng = np.random.default_rng(int(params["figure_seed"]))
    index = np.sort(rng.choice(len(labels), size=count, replace=False))
    preprocess = Preprocess.from_data_config(spec["data_config"])
    x = preprocess(torch.from_numpy(np.array(images[index])).permute(0, 3, 1, 2))
    with torch.no_grad():
        edges = model.edges(x).abs().mean(dim=1).numpy()
        mask = model.mask(x)[:, 0].numpy()
        prompted = _to_display(model.prompted(x), preprocess)
    shown = _to_display(x, preprocess)
    classes = read_classes(shards)
    fig = Figure(figsize=(2.2 * len(COLUMNS), 2.2 * count), layout="constrained")
    axes = fig.subplots(count, len(COLUMNS), squeeze=False)
    for row in range(count):
        panels = [
            (shown[row], {}),
            (edges[row], {"cmap": "gray"}),
            (shown[row] * (0.35 + 0.65 * mask[row][..., None]), {}),
            (prompted[row], {}),
        ]
        for col, (panel, style) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel, interpolation="nearest", **style)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(COLUMNS[col], fontsize=9)
        axes[row, 0].set_ylabel(f"{classes[int(labels[index[row]])]}", fontsize=9)
        axes[row, 2].set_xlabel(f"{mask[row].mean():.0%} prompted", fontsize=8)
    fig.suptitle(f"AdaViPro ({train_summary['run']}): where the pad prompt is applied")
    return fig


def sweep_table(runs: Mapping[str, Mapping[str, Any]], *results: dict[str, Any]) -> pd.DataFrame:
    """One row per sweep run from its (train_summary, test_metrics), sorted by method, width."""
    if len(results) != 2 * len(runs):
        raise ValueError(f"expected a summary and test metrics per run, got {len(results)}")
    rows = []
    for name, summary, metrics in zip(runs, results[0::2], results[1::2], strict=True):
        rows.append(
            {
                "run": name,
                "method": runs[name]["method"],
                "pad_width": int(runs[name]["options"]["prompt_size"]),
                "image_size": int(summary["image_size"]),  # the backbone's, stated once
                "trainable_params": int(summary["trainable_params"]),
                "best_val_top1": float(summary["best_val_top1"]),
                "test_top1": float(metrics["top1"]),
                "train_time_s": float(summary["train_time_s"]),
            }
        )
    return pd.DataFrame(rows).sort_values(["method", "pad_width"]).reset_index(drop=True)


def sweep_figure(table: pd.DataFrame) -> Figure:
    """Test top-1 vs pad width, one line per method (the paper: VP collapses at large widths,
    AdaViPro does not)."""
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    for method, rows in table.groupby("method"):
        ax.plot(rows["pad_width"], 100 * rows["test_top1"], marker="o", label=method)
    size = int(table["image_size"].iloc[0]) if len(table) else 0
    ax.set_xlabel(f"pad width p (px, image {size}×{size}; p = {size // 2} covers it)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_xticks(sorted(table["pad_width"].unique()))
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Pad-width sweep: VP vs AdaViPro")
    return fig
