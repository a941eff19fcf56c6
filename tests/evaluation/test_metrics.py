"""Test-split metrics on hand-made logits whose answers are known."""

from __future__ import annotations

import json

import pytest
import torch

from visprompt.evaluation import classification_metrics


def one_hot_logits(predictions: list[int], num_classes: int, confidence: float) -> torch.Tensor:
    """Logits whose softmax puts `confidence` on the predicted class, the rest spread evenly."""
    rest = (1.0 - confidence) / (num_classes - 1)
    probs = torch.full((len(predictions), num_classes), rest)
    probs[torch.arange(len(predictions)), torch.tensor(predictions)] = confidence
    return probs.log()


def test_known_predictions_give_known_metrics() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    predictions = [0, 1, 1, 1, 2, 0]  # 4 of 6 right
    m = classification_metrics(one_hot_logits(predictions, 3, 0.9), labels)
    assert m["top1"] == pytest.approx(4 / 6)
    assert m["top5"] == pytest.approx(1.0)  # top-min(5, 3) = top-3 covers every class
    assert m["per_class"] == pytest.approx([0.5, 1.0, 0.5])
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # F1 per class: c0 p=1/2 r=1/2 -> .5; c1 p=2/3 r=1 -> .8; c2 p=1 r=1/2 -> 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3, abs=1e-6)
    # all confidences 0.9 fall in one bin: ECE = |0.9 - accuracy|
    assert m["ece"] == pytest.approx(abs(0.9 - 4 / 6), abs=1e-5)
    json.dumps(m)  # plain JSON, as the catalog stores it


def test_top5_differs_from_top1_and_absent_class_is_none() -> None:
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    logits = torch.zeros(6, 7)
    # every image's true class is the runner-up; class 6 has no image
    for i, y in enumerate(labels.tolist()):
        logits[i, (y + 1) % 7] = 2.0
        logits[i, y] = 1.0
    m = classification_metrics(logits, labels)
    assert m["top1"] == 0.0
    assert m["top5"] == 1.0
    assert m["per_class"][6] is None
    assert m["num_images"] == 6


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        (torch.zeros(3), torch.zeros(3, dtype=torch.long), "logits must be"),
        (torch.zeros(3, 2), torch.zeros(2, dtype=torch.long), "labels must be"),
        (torch.zeros(2, 2), torch.tensor([0, 2]), "2 classes"),
        (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), "empty"),
    ],
)
def test_bad_input_is_a_clear_error(logits, labels, message) -> None:
    with pytest.raises(ValueError, match=message):
        classification_metrics(logits, labels)
