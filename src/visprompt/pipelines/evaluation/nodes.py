"""Nodes of the evaluation pipeline: test one run; compare all runs."""

from __future__ import annotations

import logging
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure

from visprompt import backbones, methods
from visprompt.data.shards import ShardDataset, read_classes
from visprompt.evaluation import (
    accuracy_vs_params_figure,
    classification_metrics,
    comparison_table,
    confusion_figure,
    to_markdown,
    training_curves_figure,
)
from visprompt.methods.pgn import PromptGenerationNetwork
from visprompt.methods.prompt_inversion import deployment_metrics
from visprompt.pipelines import tracking
from visprompt.training import Preprocess, predict

logger = logging.getLogger(__name__)


def evaluate_run(
    artifact_dir: str,
    train_summary: dict[str, Any],
    backbone_specs: dict[str, dict[str, Any]],
    shards: str,
    params: dict[str, Any],
) -> dict[str, Any]:
    """`<run>.test_metrics` on the test split (never used for selection), logged to the run.

    The metrics go to the run's MLflow run from training (reopened by id), so one MLflow run
    holds a method's training curve and its test result.
    """
    spec = backbone_specs[train_summary["backbone"]]
    model = methods.load(artifact_dir, backbones.from_spec(spec))
    logits, labels = predict(
        model,
        ShardDataset(shards, "test"),
        Preprocess.from_data_config(spec["data_config"]),
        batch_size=int(params["batch_size"]),
        progress=True,
    )
    metrics = classification_metrics(logits, labels, ece_bins=int(params["ece_bins"]))
    if isinstance(model, PromptGenerationNetwork):
        metrics |= _pgn_deployment(model, shards, spec, params)
    with tracking.nested_run(
        train_summary["run"],
        run_id=train_summary.get("mlflow_run_id"),
        tags={"visprompt.stage": "training"},
    ):
        tracking.log_numbers(metrics, "test_")
        mlflow.log_dict(metrics, "test_metrics.json")
    return metrics


def _pgn_deployment(
    model: PromptGenerationNetwork, shards: str, spec: dict[str, Any], params: dict[str, Any]
) -> dict[str, float]:
    """PGN's RGB-path figures (rgb_agreement, rgb_agreement_uint8, ...) on the test split."""
    try:
        return deployment_metrics(
            model,
            ShardDataset(shards, "test"),
            spec["data_config"],
            batch_size=int(params["batch_size"]),
            progress=True,
        )
    except ValueError as error:  # a ViT whose patches cannot be inverted: say so, go on
        logger.warning("pgn: no RGB deployment figures for this backbone: %s", error)
        return {}


def compare_runs(
    run_names: list[str], shards: str, *results: dict[str, Any] | list[dict[str, float]]
) -> tuple[pd.DataFrame, str, dict[str, Figure]]:
    """(comparison table, its Markdown, plots) from (summary, metrics, history) per run.

    `results` holds three entries per run, in `run_names` order. The table, its Markdown
    and the plots are also logged to the active MLflow run (the `kedro run`'s).
    """
    if len(results) != 3 * len(run_names):
        raise ValueError(f"expected 3 inputs per run for {run_names}, got {len(results)}")
    summaries = dict(zip(run_names, results[0::3], strict=True))
    metrics = dict(zip(run_names, results[1::3], strict=True))
    histories = dict(zip(run_names, results[2::3], strict=True))
    table = comparison_table(summaries, metrics)
    markdown = to_markdown(table)
    classes = read_classes(shards)
    plots = {
        "accuracy_vs_params.png": accuracy_vs_params_figure(table),
        "training_curves.png": training_curves_figure(histories),
    }
    for run in run_names:
        plots[f"confusion_{run}.png"] = confusion_figure(
            metrics[run]["confusion"],
            classes,
            f"{run} (test top-1 {100 * metrics[run]['top1']:.1f} %)",
        )
    mlflow.log_text(table.to_csv(index=False), "comparison/comparison.csv")
    mlflow.log_text(markdown, "comparison/comparison.md")
    for name, fig in plots.items():
        mlflow.log_figure(fig, f"comparison/plots/{name}")
    return table, markdown, plots
