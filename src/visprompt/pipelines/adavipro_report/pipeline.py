"""adavipro_report pipeline: train and test every sweep run (`adavipro_report.runs`, outside
the default chain), then the sweep plot and the region figure, from each run's first seed.
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.adavipro_report.nodes import region_figure, sweep_figure, sweep_table
from visprompt.pipelines.runs import project_parameters, seed_datasets, seed_namespace
from visprompt.pipelines.sweeps import recipe_runs, trained_and_tested
from visprompt.training.runs import RunSpec

SECTION = "adavipro_report"


def report_runs(params: dict[str, Any] | None = None) -> tuple[dict[str, RunSpec], str]:
    """`adavipro_report.runs`, checked, and the run its region figure shows."""
    params = project_parameters() if params is None else params
    specs = recipe_runs(SECTION, params)
    figure_run = (params.get(SECTION) or {}).get("figure_run")
    if figure_run not in specs:
        raise ValueError(
            f"parameters_adavipro_report.yml: figure_run '{figure_run}' must be one of "
            f"adavipro_report.runs ({sorted(specs)})"
        )
    return specs, figure_run


def create_pipeline(**kwargs: Any) -> Pipeline:
    specs, figure_run = report_runs()
    first = [(name, spec.seeds[0]) for name, spec in specs.items()]
    results = seed_datasets(first, "train_summary", "test_metrics")
    figure = seed_namespace(figure_run, specs[figure_run].seeds[0])
    return trained_and_tested(specs.values()) + Pipeline(
        [
            node(
                sweep_table,
                inputs=["params:adavipro_report.runs", *results],
                outputs="adavipro_sweep_table",
                name="adavipro_sweep_table",
            ),
            node(
                sweep_figure,
                inputs="adavipro_sweep_table",
                outputs="adavipro_sweep_plot",
                name="adavipro_sweep_plot",
            ),
            node(
                region_figure,
                inputs=[
                    f"{figure}.artifact_dir",
                    f"{figure}.train_summary",
                    "backbone_specs",
                    "shards",
                    "params:adavipro_report",
                ],
                outputs="adavipro_regions_figure",
                name="adavipro_regions_figure",
            ),
        ]
    )
