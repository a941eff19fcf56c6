"""ap_layer_sweep pipeline: train, test and profile every sweep run, then table and plot.

The runs (`ap_layer_sweep.runs`, outside the default chain) train every seed, so the table
and the claims carry intervals; the training-step cost is profiled on each run's first seed.
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.ap_layer_sweep.nodes import sweep_figure, sweep_table
from visprompt.pipelines.profiling.pipeline import profile_node
from visprompt.pipelines.runs import seed_datasets
from visprompt.pipelines.sweeps import recipe_runs, trained_and_tested

SECTION = "ap_layer_sweep"


def create_pipeline(**kwargs: Any) -> Pipeline:
    specs = recipe_runs(SECTION)
    if not specs:
        return Pipeline([])
    pairs = [(run, seed) for run, spec in specs.items() for seed in spec.seeds]
    results = seed_datasets(pairs, "train_summary", "test_metrics")
    first_seeds = {run: spec.seeds[0] for run, spec in specs.items()}
    return trained_and_tested(specs.values()) + Pipeline(
        [
            profile_node(first_seeds, "ap_layer_sweep_profile", "ap_layer_sweep_profile"),
            node(
                sweep_table,
                inputs=["params:ap_layer_sweep.runs", "ap_layer_sweep_profile", *results],
                outputs="ap_layer_sweep_table",
                name="ap_layer_sweep_table",
            ),
            node(
                sweep_figure,
                inputs="ap_layer_sweep_table",
                outputs="ap_layer_sweep_plot",
                name="ap_layer_sweep_plot",
            ),
        ]
    )
