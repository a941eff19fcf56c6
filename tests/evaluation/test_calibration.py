"""Calibration: the reliability table and ECE against a hand-computed case, a temperature that
repairs an overconfident model, the out-of-distribution threshold, the figures."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from visprompt.evaluation import classification_metrics, confusion_figure, reliability_figure
from visprompt.evaluation.calibration import (
    calibration_report,
    fit_ood,
    fit_temperature,
    max_softmax,
    out_of_distribution,
    reliability_table,
    served_calibration,
)

#: Two classes, four images: confidences 0.9 (right), 0.9 (wrong), 0.62 (right), 0.7 (right).
PROBS = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.38, 0.62], [0.3, 0.7]])
LABELS = torch.tensor([0, 1, 1, 1])


def test_ece_of_a_hand_computed_case() -> None:
    """15 bins of width 1/15: 0.9 falls in (0.867, 0.933] (2 images, accuracy 0.5), 0.62 in
    (0.6, 0.667], 0.7 in (0.667, 0.733]: ECE = (2 * 0.4 + 0.38 + 0.3) / 4 = 0.37."""
    rows = reliability_table(PROBS, LABELS, bins=15)
    assert [(r["count"], r["accuracy"]) for r in rows] == [(1, 1.0), (1, 1.0), (2, 0.5)]
    assert [r["confidence"] for r in rows] == pytest.approx([0.62, 0.7, 0.9])
    assert rows[0]["low"] == pytest.approx(9 / 15) and rows[0]["high"] == pytest.approx(10 / 15)
    ece = sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / 4
    assert ece == pytest.approx(0.37)
    assert classification_metrics(PROBS.log(), LABELS, ece_bins=15)["ece"] == pytest.approx(0.37)


def _overconfident(n: int = 4000, scale: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from softmax(z), logits `scale * z`: calibrated at T = scale."""
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(n, 5, generator=generator)
    labels = torch.multinomial(z.softmax(dim=1), 1, generator=generator).squeeze(1)
    return scale * z, labels


def test_temperature_lowers_the_nll_of_an_overconfident_model() -> None:
    logits, labels = _overconfident()
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(4.0, rel=0.1)
    assert F.cross_entropy(logits / temperature, labels) < 0.8 * F.cross_entropy(logits, labels)
    # one scalar: the predictions (and every accuracy) stay the same
    assert torch.equal((logits / temperature).argmax(1), logits.argmax(1))
    calibrated = fit_temperature(logits / 4.0, labels)
    assert calibrated == pytest.approx(1.0, rel=0.1)  # a calibrated model is left alone
    with pytest.raises(ValueError, match="logits \\(N, C\\)"):
        fit_temperature(logits[:0], labels[:0])


def test_calibration_report_lowers_ece_and_flags_about_the_quantile_of_val() -> None:
    logits, labels = _overconfident()
    val, test = slice(0, 2000), slice(2000, None)
    report = calibration_report(logits[val], labels[val], logits[test], labels[test])
    assert report["ece_bins"] == 15 and report["ood"]["score"] == "logit_mahalanobis"
    assert (
        report["ece_temperature_scaled"]
        < 0.5 * classification_metrics(logits[test], labels[test])["ece"]
    )
    assert report["nll_temperature_scaled"] < report["nll"]
    assert 0.02 < report["ood_flagged_test"] < 0.09  # ~5 % of in-distribution images
    raw, scaled = (
        report["val_confidence_quantiles"],
        report["val_confidence_quantiles_temperature_scaled"],
    )
    assert scaled["q50"] < raw["q50"]  # an overconfident model's confidence comes down
    assert scaled["q50"] == pytest.approx(
        float(max_softmax(logits[val], report["temperature"]).median()), abs=1e-3
    )
    assert served_calibration(report) == {
        "temperature": report["temperature"],
        "ood": report["ood"],
    }


def _digits_model() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A small MLP trained on scikit-learn's 8x8 digits; (model, images, labels) of all 1797."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        F.cross_entropy(model(x[:1000]), y[:1000]).backward()
        optimizer.step()
    return model.eval(), x, y


def _photo_crops(n: int = 200) -> torch.Tensor:
    """Another dataset: grey crops of scikit-learn's two sample photos at 8x8, in [0, 1]."""
    import numpy as np
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    photos = [image.mean(axis=2) for image in load_sample_images().images]
    crops = []
    for _ in range(n):
        photo, side = photos[rng.integers(2)], int(rng.integers(16, 128))
        row, col = rng.integers(0, photo.shape[0] - side), rng.integers(0, photo.shape[1] - side)
        crop = torch.tensor(photo[row : row + side, col : col + side], dtype=torch.float32)
        crops.append(F.adaptive_avg_pool2d(crop[None, None], 8).flatten() / 255)
    return torch.stack(crops)


def test_ood_flags_other_datasets_and_noise_not_the_models_own_data() -> None:
    """A digits model's detector, fitted on its validation digits: held-out digits are
    flagged at about the quantile (5 %), photo crops and uniform noise nearly all, where
    their max-softmax confidence alone would pass most of them."""
    model, x, y = _digits_model()
    with torch.no_grad():
        val, test = model(x[1000:1400]), model(x[1400:])
        photos, noise = (
            model(_photo_crops()),
            model(torch.rand(200, 64, generator=torch.Generator().manual_seed(1))),
        )
    assert (test.argmax(1) == y[1400:]).float().mean() > 0.9
    detector = fit_ood(val, y[1000:1400], quantile=0.05)
    assert out_of_distribution(val, detector).float().mean() == pytest.approx(0.05, abs=0.01)
    assert out_of_distribution(test, detector).float().mean() < 0.2  # 13.6 %: val != test
    assert out_of_distribution(photos, detector).float().mean() > 0.9
    assert out_of_distribution(noise, detector).float().mean() > 0.9
    temperature = fit_temperature(val, y[1000:1400])
    floor = torch.quantile(max_softmax(val, temperature), 0.05)
    assert (max_softmax(photos, temperature) >= floor).float().mean() > 0.5  # why not max-softmax


def test_figures_are_readable_on_their_own() -> None:
    classes = ["T-shirt", "Trouser", "Pullover"]
    figure = confusion_figure([[8, 2, 0], [0, 10, 0], [1, 0, 9]], classes, "vp (seed 0)")
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == classes
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "T-shirt (10)", "Trouser (10)", "Pullover (10)"
    ]  # fmt: skip
    assert ax.images[0].get_array()[0, 0] == pytest.approx(0.8)  # rows normalised
    assert sorted(t.get_text() for t in ax.texts) == ["10", "100", "20", "80", "90"]
    assert figure.get_size_inches()[1] >= 4.0
    with pytest.raises(ValueError, match="3x3 matrix"):
        confusion_figure([[1, 0], [0, 1]], classes, "x")
    diagram = reliability_figure({"raw": reliability_table(PROBS, LABELS)}, "t")
    labels = [t.get_text() for t in diagram.axes[0].get_legend().get_texts()]
    assert labels == ["perfectly calibrated", "raw (ECE 37.0 %)"]
