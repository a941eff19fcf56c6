"""How far a classifier's confidence can be trusted: the reliability table behind the
expected calibration error, one temperature fitted on validation (Guo et al. 2017), and an
out-of-distribution score with its threshold.

The out-of-distribution score is the maximum softmax probability after temperature scaling
(Hendrycks & Gimpel 2017): an input whose score falls below `ood_threshold`, the `quantile`
(5 % by default) of the validation images' scores, is flagged. By construction about
`quantile` of in-distribution images are flagged; images unlike the training data (another
dataset, noise) mostly score lower.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

#: Equal-width confidence bins of the reliability table and the ECE.
ECE_BINS = 15
#: Fraction of validation images the out-of-distribution threshold flags.
OOD_QUANTILE = 0.05


def reliability_table(
    probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """Per equal-width confidence bin: `low`, `high`, `count`, `confidence` (mean max
    probability) and `accuracy`, for the non-empty bins (the reliability diagram's points).

    ECE = sum(count * |accuracy - confidence|) / N over these bins.
    """
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).double()
    # bin i holds (i/bins, (i+1)/bins]: torchmetrics' binning, so its ECE is this table's
    index = (torch.ceil(confidence.double() * bins).long() - 1).clamp(0, bins - 1)
    rows = []
    for i in range(bins):
        inside = index == i
        count = int(inside.sum())
        if count:
            rows.append(
                {
                    "low": i / bins,
                    "high": (i + 1) / bins,
                    "count": count,
                    "confidence": float(confidence[inside].double().mean()),
                    "accuracy": float(correct[inside].mean()),
                }
            )
    return rows


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature T > 0 that minimises the NLL of softmax(logits / T) on `labels`.

    One scalar: the argmax (and so every accuracy) is unchanged, only confidences move.
    Optimised in log T with LBFGS from T = 1.
    """
    if logits.ndim != 2 or labels.shape != (logits.shape[0],) or logits.shape[0] == 0:
        raise ValueError(
            f"fit_temperature: logits (N, C) and labels (N,) with N > 0, got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    logits, labels = logits.detach().double().cpu(), labels.detach().long().cpu()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not math.isfinite(temperature):
        raise ValueError("fit_temperature: the fit diverged (are the logits finite?)")
    return temperature


def ood_scores(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The maximum softmax probability at `temperature`: low = unlike the training data."""
    return (logits.detach().float() / temperature).softmax(dim=1).max(dim=1).values


def ood_threshold(
    logits: torch.Tensor, temperature: float = 1.0, quantile: float = OOD_QUANTILE
) -> float:
    """The `quantile` of the validation images' `ood_scores`: scores below it are flagged."""
    return float(torch.quantile(ood_scores(logits, temperature).double(), quantile))


def calibration_report(
    val_logits: torch.Tensor,
    val_labels: torch.Tensor,
    test_logits: torch.Tensor,
    test_labels: torch.Tensor,
    bins: int = ECE_BINS,
    quantile: float = OOD_QUANTILE,
) -> dict[str, Any]:
    """The temperature and OOD threshold fitted on validation, and what they do on test:
    NLL and ECE before/after, reliability tables, the confidence distribution on val."""
    temperature = fit_temperature(val_logits, val_labels)
    classes = int(test_logits.shape[1])

    def numbers(logits: torch.Tensor, labels: torch.Tensor, t: float) -> dict[str, float]:
        probs = (logits.float() / t).softmax(dim=1)
        ece = multiclass_calibration_error(probs, labels, classes, n_bins=bins, norm="l1")
        nll = F.cross_entropy(logits.double() / t, labels)
        return {"ece": float(ece), "nll": float(nll)}

    before = numbers(test_logits, test_labels, 1.0)
    after = numbers(test_logits, test_labels, temperature)
    val_confidence = ood_scores(val_logits, temperature).double()
    levels = (0.05, 0.25, 0.5, 0.75, 0.95)
    return {
        "temperature": temperature,
        "ece_bins": bins,
        "ece_temperature_scaled": after["ece"],
        "nll": before["nll"],
        "nll_temperature_scaled": after["nll"],
        "ood_score": "max_softmax",
        "ood_quantile": quantile,
        "ood_threshold": ood_threshold(val_logits, temperature, quantile),
        "val_confidence_quantiles": {
            f"q{int(100 * q):02d}": float(torch.quantile(val_confidence, q)) for q in levels
        },
        "reliability": reliability_table(test_logits.float().softmax(dim=1), test_labels, bins),
        "reliability_temperature_scaled": reliability_table(
            (test_logits.float() / temperature).softmax(dim=1), test_labels, bins
        ),
    }
