"""Evaluation of trained methods: test-split metrics, the comparison table and its plots.

A torch/pandas/matplotlib library: the evaluation pipeline wires it, notebooks can call it.
"""

from visprompt.evaluation.comparison import (
    COLUMNS,
    SEED_COLUMNS,
    SIGNIFICANCE_COLUMNS,
    comparison_table,
    seed_table,
    significance_table,
    to_markdown,
)
from visprompt.evaluation.metrics import classification_metrics
from visprompt.evaluation.plots import (
    accuracy_vs_params_figure,
    confusion_figure,
    reliability_figure,
    training_curves_figure,
)

__all__ = [
    "COLUMNS",
    "SEED_COLUMNS",
    "SIGNIFICANCE_COLUMNS",
    "accuracy_vs_params_figure",
    "classification_metrics",
    "comparison_table",
    "confusion_figure",
    "reliability_figure",
    "seed_table",
    "significance_table",
    "to_markdown",
    "training_curves_figure",
]
