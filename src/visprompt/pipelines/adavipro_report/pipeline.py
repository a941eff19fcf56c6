"""adavipro_report pipeline: train and test every sweep run, then the sweep plot and figure.

The sweep runs live in `parameters_adavipro_report.yml` (`adavipro_report.runs`, the same
format as `training.runs`), so `kedro run` (the default chain) does not train them. Each run
reuses the training and evaluation pipelines' per-run pipelines, with its `run` parameter
read from `adavipro_report.runs.<name>`; outputs use the usual `<run>.seed_<s>.*` datasets.
A sweep run trains seed 0 unless it sets `seeds`; the table and figure use its first seed.
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.adavipro_report.nodes import region_figure, sweep_figure, sweep_table
from visprompt.pipelines.evaluation.pipeline import run_pipeline as evaluation_run
from visprompt.pipelines.runs import RunSpec, parse_run, project_parameters, seed_namespace
from visprompt.pipelines.training.pipeline import run_pipeline as training_run


def report_parameters(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """`adavipro_report` of the project parameters, with its run list checked."""
    params = project_parameters() if params is None else params
    report = dict(params.get("adavipro_report") or {})
    runs = report.get("runs") or {}
    for name, entry in runs.items():
        parse_run(name, entry)
    if report.get("figure_run") not in runs:
        raise ValueError(
            f"parameters_adavipro_report.yml: figure_run '{report.get('figure_run')}' must be "
            f"one of adavipro_report.runs ({sorted(runs)})"
        )
    return report


def _trained_and_tested(spec: RunSpec) -> Pipeline:
    name = spec.name
    train = Pipeline(
        training_run(spec),
        parameters={f"params:training.runs.{name}": f"params:adavipro_report.runs.{name}"},
    )
    return train + evaluation_run(name, spec.seeds)


def create_pipeline(**kwargs: Any) -> Pipeline:
    report = report_parameters()
    specs = [parse_run(name, entry) for name, entry in (report.get("runs") or {}).items()]
    first = {spec.name: seed_namespace(spec.name, spec.seeds[0]) for spec in specs}
    results = [
        f"{first[s.name]}.{name}" for s in specs for name in ("train_summary", "test_metrics")
    ]
    figure_run = first[report["figure_run"]]
    sweep = (_trained_and_tested(spec) for spec in specs)
    return sum(sweep, Pipeline([])) + Pipeline(
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
                    f"{figure_run}.artifact_dir",
                    f"{figure_run}.train_summary",
                    "backbone_specs",
                    "shards",
                    "params:adavipro_report",
                ],
                outputs="adavipro_regions_figure",
                name="adavipro_regions_figure",
            ),
        ]
    )
