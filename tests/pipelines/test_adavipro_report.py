"""adavipro_report nodes: the sweep table and plot, the region figure, the run-list checks."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from visprompt import methods
from visprompt.backbones import save_weights
from visprompt.data.shards import write_classes, write_split
from visprompt.pipelines.adavipro_report.nodes import region_figure, sweep_figure, sweep_table
from visprompt.pipelines.adavipro_report.pipeline import report_runs

IMAGE_SIZE = 32
VIT = (
    "vit_tiny_patch16_224",
    {
        "img_size": IMAGE_SIZE,
        "patch_size": 8,
        "embed_dim": 32,
        "depth": 1,
        "num_heads": 2,
        "num_classes": 3,
    },
)


def make_backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(VIT[0], pretrained=False, **VIT[1]).eval()


RUNS = {
    f"sweep_{m}_p{w}": {
        "method": m,
        "backbone": "vit",
        "options": {"prompt_size": w},
    }
    for m in ("vp", "adavipro")
    for w in (8, 2)
}


def results() -> list[dict]:
    out = []
    for i, _ in enumerate(RUNS):
        out += [
            {
                "trainable_params": 100 + i,
                "best_val_top1": 0.5,
                "train_time_s": 1.0,
                "image_size": IMAGE_SIZE,  # the backbone's, reported by the training node
            },
            {"top1": 0.1 * (i + 1)},
        ]
    return out


def test_sweep_table_and_plot() -> None:
    table = sweep_table(RUNS, *results())
    assert list(table["method"]) == ["adavipro", "adavipro", "vp", "vp"]
    assert list(table["pad_width"]) == [2, 8, 2, 8]
    assert set(table["image_size"]) == {IMAGE_SIZE}
    assert table.loc[table["run"] == "sweep_vp_p8", "test_top1"].item() == pytest.approx(0.1)
    fig = sweep_figure(table)
    assert len(fig.axes[0].get_lines()) == 2
    with pytest.raises(ValueError, match="summary and test metrics per run"):
        sweep_table(RUNS, *results()[:-1])


def test_region_figure_from_a_saved_run(tmp_path) -> None:
    backbone = make_backbone()
    name, kwargs = VIT
    spec = {
        "name": name,
        "model_kwargs": kwargs,
        "weights_path": str(tmp_path / "vit.safetensors"),
        "sha256": save_weights(backbone, tmp_path / "vit.safetensors"),
        "data_config": {
            "input_size": [3, IMAGE_SIZE, IMAGE_SIZE],
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
        },
    }
    model = methods.build(
        "adavipro", backbone, 3, prompt_size=4, image_size=IMAGE_SIZE, region_size=8
    )
    methods.save(model, tmp_path / "run")
    rng = np.random.default_rng(0)
    write_split(
        tmp_path / "shards",
        "test",
        rng.integers(0, 256, (5, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8),
        np.arange(5) % 3,
    )
    write_classes(tmp_path / "shards", ["a", "b", "c"])
    fig = region_figure(
        str(tmp_path / "run"),
        {"run": "r", "backbone": "vit"},
        {"vit": spec},
        str(tmp_path / "shards"),
        {"figure_images": 3, "figure_seed": 0},
    )
    assert len(fig.axes) == 3 * 4
    masks = [ax.get_images()[0].get_array() for ax in fig.axes[2::4]]
    assert all(m.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) for m in masks)

    methods.save(methods.build("linear_probe", make_backbone(), 3), tmp_path / "lp")
    with pytest.raises(ValueError, match="choose an adavipro run"):
        region_figure(
            str(tmp_path / "lp"),
            {"run": "lp", "backbone": "vit"},
            {"vit": spec},
            str(tmp_path / "shards"),
            {"figure_images": 3, "figure_seed": 0},
        )


def test_report_runs_are_checked() -> None:
    good = {"adavipro_report": {"figure_run": "sweep_adavipro_p2", "runs": RUNS}}
    specs, figure_run = report_runs(good)
    assert figure_run == "sweep_adavipro_p2" and list(specs) == list(RUNS)
    with pytest.raises(ValueError, match="figure_run 'nope' must be one of"):
        report_runs({"adavipro_report": {"figure_run": "nope", "runs": RUNS}})
    with pytest.raises(ValueError, match="'method' is required"):
        report_runs({"adavipro_report": {"figure_run": "x", "runs": {"x": {"backbone": "v"}}}})
