"""How far a classifier's confidence can be trusted: the reliability table behind the
expected calibration error, one temperature fitted on validation (Guo et al. 2017), and an
out-of-distribution score with its threshold.

The out-of-distribution score is the Mahalanobis distance of an image's logit vector to the
nearest class mean of the validation images' logits, under their shared (class-centred)
covariance (`fit_ood`). An image farther than the `1 - quantile` quantile of the validation
images' distances (95 % by default) is flagged: about `quantile` of in-distribution images
are, by construction. The maximum softmax probability was the first candidate, but a model
extrapolates confidently far from its data (a digits model gave photos and noise
max-softmax above the validation's 5 % quantile for 70-87 % of them); the distance flags
98-100 % (tests/evaluation/test_calibration.py). Temperature scaling does not change it.
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


def max_softmax(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The confidence of each prediction: the maximum softmax probability at `temperature`."""
    return (logits.detach().float() / temperature).softmax(dim=1).max(dim=1).values


def fit_ood(
    logits: torch.Tensor, labels: torch.Tensor, quantile: float = OOD_QUANTILE
) -> dict[str, Any]:
    """The out-of-distribution detector of validation `logits` (JSON-ready): the class means
    of the logits (classes without a validation image left out), the precision matrix of
    their class-centred covariance (ridge 1e-3 of its mean variance, so it inverts), and the
    threshold: the `1 - quantile` quantile of the validation images' own distances."""
    logits, labels = logits.detach().double().cpu(), labels.detach().long().cpu()
    present = sorted(set(labels.tolist()))
    means = torch.stack([logits[labels == c].mean(dim=0) for c in present])
    centred = logits - means[[present.index(c) for c in labels.tolist()]]
    covariance = centred.T @ centred / max(1, len(logits) - len(present))
    ridge = 1e-3 * float(covariance.diagonal().mean().clamp(min=1e-12))
    precision = torch.linalg.inv(covariance + ridge * torch.eye(len(covariance)))
    detector = {"score": "logit_mahalanobis", "quantile": quantile,
                "means": means.tolist(), "precision": precision.tolist()}  # fmt: skip
    distances = ood_scores(logits, detector)
    return detector | {"threshold": float(torch.quantile(distances, 1.0 - quantile))}


def ood_scores(logits: torch.Tensor, detector: dict[str, Any]) -> torch.Tensor:
    """Each image's distance to the nearest validation class mean (`fit_ood`): high =
    unlike the data the model was validated on."""
    means = torch.tensor(detector["means"], dtype=torch.float64)
    precision = torch.tensor(detector["precision"], dtype=torch.float64)
    delta = logits.detach().double().cpu()[:, None, :] - means[None]
    return torch.einsum("ncd,de,nce->nc", delta, precision, delta).min(dim=1).values.sqrt()


def out_of_distribution(logits: torch.Tensor, detector: dict[str, Any]) -> torch.Tensor:
    """True where an image lies beyond the detector's threshold."""
    return ood_scores(logits, detector) > detector["threshold"]


def served_calibration(metrics: dict[str, Any]) -> dict[str, Any]:
    """What a registered version's package keeps of a seed's test metrics to serve them:
    `temperature` and the `ood` detector (pyfunc_model applies both)."""
    return {"temperature": float(metrics["temperature"]), "ood": dict(metrics["ood"])}


def calibration_report(
    val_logits: torch.Tensor,
    val_labels: torch.Tensor,
    test_logits: torch.Tensor,
    test_labels: torch.Tensor,
    bins: int = ECE_BINS,
    quantile: float = OOD_QUANTILE,
) -> dict[str, Any]:
    """The temperature and the OOD detector fitted on validation, and what they do on test:
    NLL and ECE before/after, the fraction of test images flagged, reliability tables, the
    confidence distribution on val before/after."""
    temperature = fit_temperature(val_logits, val_labels)
    classes = int(test_logits.shape[1])

    def numbers(logits: torch.Tensor, labels: torch.Tensor, t: float) -> dict[str, float]:
        probs = (logits.float() / t).softmax(dim=1)
        ece = multiclass_calibration_error(probs, labels, classes, n_bins=bins, norm="l1")
        nll = F.cross_entropy(logits.double() / t, labels)
        return {"ece": float(ece), "nll": float(nll)}

    before = numbers(test_logits, test_labels, 1.0)
    after = numbers(test_logits, test_labels, temperature)
    val_confidence = max_softmax(val_logits, temperature).double()
    raw_confidence = max_softmax(val_logits).double()
    levels = (0.05, 0.25, 0.5, 0.75, 0.95)
    detector = fit_ood(val_logits, val_labels, quantile)
    return {
        "temperature": temperature,
        "ece_bins": bins,
        "ece_temperature_scaled": after["ece"],
        "nll": before["nll"],
        "nll_temperature_scaled": after["nll"],
        "ood": detector,
        "ood_flagged_test": float(out_of_distribution(test_logits, detector).double().mean()),
        # the served confidence on val before and after the temperature (its distribution)
        "val_confidence_quantiles": {
            f"q{int(100 * q):02d}": float(torch.quantile(raw_confidence, q)) for q in levels
        },
        "val_confidence_quantiles_temperature_scaled": {
            f"q{int(100 * q):02d}": float(torch.quantile(val_confidence, q)) for q in levels
        },
        "reliability": reliability_table(test_logits.float().softmax(dim=1), test_labels, bins),
        "reliability_temperature_scaled": reliability_table(
            (test_logits.float() / temperature).softmax(dim=1), test_labels, bins
        ),
    }
