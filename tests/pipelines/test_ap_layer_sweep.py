"""ap_layer_sweep nodes: the per-layer table (accuracy, cost), its plot, the run list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from visprompt.pipelines.ap_layer_sweep.nodes import sweep_figure, sweep_table
from visprompt.pipelines.sweeps import recipe_runs

CONF = Path(__file__).resolve().parents[2] / "conf" / "base"


def ap(backbone: str, layer: str, granularity: str = "full") -> dict:
    return {
        "method": "ap",
        "backbone": backbone,
        "options": {"layer": layer, "granularity": granularity, "image_size": 32},
    }


RUNS = {
    "r_l3": ap("resnet", "layer3"),
    "r_l1": ap("resnet", "layer1"),  # config order is the depth order, not the name
    "r_vp": {"method": "vp", "backbone": "resnet", "options": {"prompt_size": 4}},
    "r_chan": ap("resnet", "layer4.1.bn2", "channel"),
    "v_b0": ap("vit", "blocks.0"),
    "v_b1": ap("vit", "blocks.1"),
}
PROFILE = pd.DataFrame(
    {
        "run": ["backbone", *RUNS, "backbone"],
        "train_step_ms": [1.0, 3.0, 5.0, 9.0, 2.5, 4.0, 3.5, 1.5],
        "peak_train_mem_mb": [10.0] * 8,
        "train_step_ratio": [1.0] * 8,
        "train_mem_ratio": [1.0] * 8,
    }
)


def results(seed: int = 0) -> list[dict]:
    out = []
    for i, run in enumerate(RUNS):
        summary = {"run": run, "seed": seed, "trainable_params": 10 + i, "best_val_top1": 0.5}
        out += [summary | {"train_time_s": 2.0 + i}, {"top1": 0.1 * (i + 1) + 0.02 * seed}]
    return out


def test_sweep_table_orders_layers_and_joins_costs() -> None:
    table = sweep_table(RUNS, PROFILE, *results())
    by_run = table.set_index("run")
    assert by_run.at["r_l3", "depth"] == 0 and by_run.at["r_l1", "depth"] == 1
    assert by_run.at["v_b1", "depth"] == 1
    assert np.isnan(by_run.at["r_vp", "depth"]) and np.isnan(by_run.at["r_chan", "depth"])
    assert by_run.at["r_vp", "train_step_ms"] == 9.0 and by_run.at["v_b0", "top1"] == 0.5
    assert set(table["seed"]) == {0}
    with pytest.raises(ValueError, match="pairs"):
        sweep_table(RUNS, PROFILE, *results()[:-1])
    with pytest.raises(ValueError, match="not a sweep run"):
        sweep_table({"r_l3": RUNS["r_l3"]}, PROFILE, *results())


def test_sweep_figure_has_accuracy_and_cost_per_backbone() -> None:
    table = sweep_table(RUNS, PROFILE, *results(0), *results(1))
    assert len(table) == 2 * len(RUNS) and set(table["seed"]) == {0, 1}
    fig = sweep_figure(table)
    axes = fig.get_axes()
    assert len(axes) == 4  # (accuracy, cost) × (resnet, vit)
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["layer3", "layer1"]
    line = axes[0].get_lines()[0]
    assert np.allclose(line.get_ydata(), [11.0, 21.0])  # mean of the two seeds, in %


def test_the_projects_sweep_covers_four_stages_of_each_backbone() -> None:
    params = yaml.safe_load((CONF / "parameters_ap_layer_sweep.yml").read_text())
    specs = recipe_runs("ap_layer_sweep", params)
    assert all(len(s.seeds) >= 2 for s in specs.values())  # the claims need paired seeds
    for backbone in ("resnet", "vit"):
        layers = [
            s.options["layer"]
            for s in specs.values()
            if s.backbone == backbone and s.method == "ap" and s.options["granularity"] == "full"
        ]
        assert len(layers) >= 4
    with pytest.raises(ValueError, match="'method' is required"):
        recipe_runs("ap_layer_sweep", {"ap_layer_sweep": {"runs": {"x": {"backbone": "resnet"}}}})
