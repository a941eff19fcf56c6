"""Test-split classification metrics computed with torchmetrics (no hand-rolled formulas)."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)


def classification_metrics(
    logits: torch.Tensor, labels: torch.Tensor, *, ece_bins: int = 15
) -> dict[str, Any]:
    """top1, top5 (top-min(5, C)), macro_f1, ece (L1, `ece_bins` bins), per_class (recall,
    None without a test image), confusion[true][predicted], as plain JSON numbers."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, C), got shape {tuple(logits.shape)}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must be ({logits.shape[0]},), got {tuple(labels.shape)}")
    if logits.shape[0] == 0:
        raise ValueError("no test images: cannot compute metrics on an empty split")
    num_classes = int(logits.shape[1])
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(
            f"labels span [{int(labels.min())}, {int(labels.max())}] but logits have "
            f"{num_classes} classes"
        )
    logits = logits.detach().float().cpu()
    labels = labels.detach().long().cpu()
    probs = logits.softmax(dim=1)

    def accuracy(k: int) -> float:
        return float(MulticlassAccuracy(num_classes, top_k=k, average="micro")(logits, labels))

    confusion = MulticlassConfusionMatrix(num_classes)(logits, labels)
    support = confusion.sum(dim=1)
    per_class = [
        float(confusion[i, i] / support[i]) if support[i] > 0 else None for i in range(num_classes)
    ]
    return {
        "num_images": int(labels.numel()),
        "top1": accuracy(1),
        "top5": accuracy(min(5, num_classes)),
        "macro_f1": float(MulticlassF1Score(num_classes, average="macro")(logits, labels)),
        "ece": float(
            MulticlassCalibrationError(num_classes, n_bins=ece_bins, norm="l1")(probs, labels)
        ),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }
