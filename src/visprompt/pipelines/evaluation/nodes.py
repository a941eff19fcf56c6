"""Nodes of the evaluation pipeline: test one run; compare all runs."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure

from visprompt import backbones, methods
from visprompt.data.shards import ShardDataset, read_classes
from visprompt.evaluation import (
    accuracy_vs_params_figure,
    classification_metrics,
    comparison_table,
    confusion_figure,
    reliability_figure,
    seed_table,
    significance_table,
    to_markdown,
    training_curves_figure,
)
from visprompt.evaluation.calibration import calibration_report
from visprompt.evaluation.dvc_files import curves_table, run_metrics
from visprompt.pipelines import tracking
from visprompt.training import Placement, Preprocess, predict


def evaluate_run(
    artifact_dir: str,
    train_summary: dict[str, Any],
    backbone_specs: dict[str, dict[str, Any]],
    shards: str,
    params: dict[str, Any],
) -> dict[str, Any]:
    """`<run>.test_metrics` on the test split (never used for selection), logged to the run,
    with its calibration: a temperature and an out-of-distribution threshold fitted on the
    validation split (`calibration.calibration_report`; the registry serves them).

    The metrics go to the run's MLflow run from training (reopened by id: a catalog dataset
    cannot name a run known only from the summary), so one MLflow run holds a method's
    training curve and its test result; values it holds already are not logged again. It
    runs on the accelerator and in the precision the run trained with (in its summary).
    """
    spec = backbone_specs[train_summary["backbone"]]
    placement = Placement.from_engine(train_summary)
    model = methods.load(artifact_dir, backbones.from_spec(spec))
    preprocess = Preprocess.from_data_config(spec["data_config"])

    def logits_of(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        dataset, size = ShardDataset(shards, split), int(params["batch_size"])
        return predict(model, dataset, preprocess, size, progress=True, placement=placement)

    logits, labels = logits_of("test")
    bins = int(params["ece_bins"])
    metrics = classification_metrics(logits, labels, ece_bins=bins)
    metrics |= calibration_report(
        *logits_of("val"), logits, labels, bins=bins, quantile=float(params["ood_quantile"])
    )
    test_set, batch_size = ShardDataset(shards, "test"), int(params["batch_size"])
    metrics |= model.extra_test_metrics(test_set, spec["data_config"], batch_size, progress=True)
    tracking.log_changed_numbers(
        train_summary["run"],
        train_summary.get("mlflow_run_id"),
        metrics,
        "test_",
        tags={"visprompt.stage": "training"},
    )
    return metrics


def compare_runs(
    layout: list[tuple[str, int]], shards: str, *results: dict[str, Any] | list[dict[str, float]]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str, dict[str, Figure], dict[str, Figure]]:
    """(comparison, comparison_seeds, significance, Markdown, plots, run plots) across runs
    and seeds.

    `results` holds (summary, metrics, history) per (run, seed) of `layout`, in its order.
    The catalog saves the tables, the Markdown and the plots and logs them to the `kedro
    run`'s MLflow run (kedro-mlflow's MlflowArtifactDataset, catalog_evaluation.yml).
    Each run's confusion matrix and reliability diagram (its first seed's) go to the run
    plots; the best run's by test top-1 are also `confusion.png` and `reliability.png`.
    """
    if len(results) != 3 * len(layout):
        raise ValueError(f"expected 3 inputs per (run, seed) for {layout}, got {len(results)}")
    keys = [(run, int(seed)) for run, seed in layout]
    summaries = dict(zip(keys, results[0::3], strict=True))
    metrics = dict(zip(keys, results[1::3], strict=True))
    histories = dict(zip(keys, results[2::3], strict=True))
    seeds = seed_table(summaries, metrics)
    table = comparison_table(seeds)
    significance = significance_table(seeds, table)
    markdown = to_markdown(table, significance)
    classes = read_classes(shards)
    plots = {
        "accuracy_vs_params.png": accuracy_vs_params_figure(table, num_classes=len(classes)),
        "training_curves.png": training_curves_figure(histories, table),
    }
    first_seed: dict[str, int] = {}
    for run, seed in keys:
        first_seed.setdefault(run, seed)
    run_plots: dict[str, Figure] = {}
    for run, seed in first_seed.items():
        run_plots |= calibration_plots(run, seed, metrics[(run, seed)], classes)
    best = str(table.sort_values("top1_mean" if "top1_mean" in table else "top1").iloc[-1]["run"])
    plots["confusion.png"] = run_plots[f"{best}/confusion.png"]
    plots["reliability.png"] = run_plots[f"{best}/reliability.png"]
    return table, seeds, significance, markdown, plots, run_plots


def calibration_plots(
    run: str, seed: int, metrics: dict[str, Any], classes: list[str]
) -> dict[str, Figure]:
    """`<run>/confusion.png` and `<run>/reliability.png` (before and after the temperature)
    of one seed's test metrics."""
    name = f"{run} (seed {seed}, test top-1 {100 * metrics['top1']:.1f} %)"
    scaled = f"temperature {metrics['temperature']:.2f} (fitted on val)"
    tables = {"raw": metrics["reliability"], scaled: metrics["reliability_temperature_scaled"]}
    return {
        f"{run}/confusion.png": confusion_figure(metrics["confusion"], classes, name),
        f"{run}/reliability.png": reliability_figure(
            tables, f"{name}: reliability ({metrics['ece_bins']} bins)"
        ),
    }


def dvc_files(
    layout: list[tuple[str, int]], comparison: pd.DataFrame, *histories: list[dict[str, float]]
) -> tuple[dict[str, dict[str, float | int]], pd.DataFrame]:
    """(one metrics dict per run, the training-curves table) for `dvc metrics` / `dvc plots`.

    `histories` holds each (run, seed) of `layout`'s history, in its order.
    """
    keys = [(run, int(seed)) for run, seed in layout]
    return run_metrics(comparison), curves_table(dict(zip(keys, histories, strict=True)))
