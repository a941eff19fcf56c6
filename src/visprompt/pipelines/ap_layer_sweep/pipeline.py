"""ap_layer_sweep pipeline: train, test and profile every sweep run, then table and plot.

The runs live in `parameters_ap_layer_sweep.yml` (`ap_layer_sweep.runs`, the format of
`training.runs`), so `kedro run` (the default chain) does not train them. Each run reuses
the training and evaluation pipelines' per-run pipelines with its `run` parameter read from
`ap_layer_sweep.runs.<name>`; outputs use the usual `<run>.seed_<s>.*` datasets. Every run
trains `ap_layer_sweep.seeds` (a run may set its own `seeds`), so the table and the claims
report carry intervals and paired tests. The training-step cost comes from the profiling
library on each run's first seed, every run next to its bare backbone.
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline, node

from visprompt.pipelines.ap_layer_sweep.nodes import sweep_figure, sweep_table
from visprompt.pipelines.evaluation.pipeline import run_pipeline as evaluation_run
from visprompt.pipelines.profiling.nodes import profile_runs
from visprompt.pipelines.runs import bind_first, project_parameters, seed_namespace
from visprompt.pipelines.training.pipeline import run_pipeline as training_run
from visprompt.training.runs import RunSpec, parse_run, parse_seeds


def sweep_runs(params: dict[str, Any] | None = None) -> dict[str, RunSpec]:
    """`ap_layer_sweep.runs` of the project parameters, each checked like a training run."""
    params = project_parameters() if params is None else params
    sweep = params.get("ap_layer_sweep") or {}
    seeds = parse_seeds(sweep.get("seeds", [0]), "parameters_ap_layer_sweep.yml: seeds")
    runs = sweep.get("runs") or {}
    return {name: parse_run(name, entry, seeds) for name, entry in runs.items()}


def _trained_and_tested(spec: RunSpec) -> Pipeline:
    name = spec.name
    train = Pipeline(
        training_run(spec),
        parameters={f"params:training.runs.{name}": f"params:ap_layer_sweep.runs.{name}"},
    )
    return train + evaluation_run(name, spec.seeds)


def create_pipeline(**kwargs: Any) -> Pipeline:
    specs = sweep_runs()
    names = list(specs)
    if not names:
        return Pipeline([])
    profile = bind_first(profile_runs, names)
    first = {name: seed_namespace(name, spec.seeds[0]) for name, spec in specs.items()}
    per_run = [
        f"{first[run]}.{name}" for run in names for name in ("artifact_dir", "train_summary")
    ]
    results = [
        f"{seed_namespace(run, seed)}.{name}"
        for run, spec in specs.items()
        for seed in spec.seeds
        for name in ("train_summary", "test_metrics")
    ]
    return sum((_trained_and_tested(s) for s in specs.values()), Pipeline([])) + Pipeline(
        [
            node(
                profile,
                inputs=[
                    "backbone_specs",
                    "shards",
                    "params:profiling",
                    "params:training.defaults",
                    *per_run,
                ],
                outputs="ap_layer_sweep_profile",
                name="ap_layer_sweep_profile",
            ),
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
