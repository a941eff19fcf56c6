"""A version whose package holds a temperature and an out-of-distribution detector serves
calibrated probabilities and flags images unlike its validation images (a real MLflow store)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from registry_kit import make_package, offline_probabilities, register_package, smoke_for

from visprompt.data.transforms import to_model_input
from visprompt.evaluation.calibration import fit_ood, ood_scores
from visprompt.registry.integrity import encode_png
from visprompt.registry.promotion import CHAMPION


def _tinted(n: int, seed: int) -> np.ndarray:
    """The "training distribution": flat colour images with a little noise."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (n, 1, 1, 3))
    return np.clip(colours + rng.normal(0, 8, (n, 32, 32, 3)), 0, 255).astype(np.uint8)


def test_served_probabilities_use_the_temperature_and_flag_other_images(
    project: Path, model_name: str
) -> None:
    artifact, package, model = make_package(project, seed=7)
    pre = package["preprocessing"]
    images = torch.from_numpy(_tinted(200, seed=1)).permute(0, 3, 1, 2)
    with torch.no_grad():
        logits = model.eval()(to_model_input(images, 32, pre["mean"], pre["std"]))
    package["calibration"] = {"temperature": 2.5, "ood": fit_ood(logits, logits.argmax(1))}
    register_package(project, model_name, artifact, package, smoke_for(model, package), 0.6)
    loaded = mlflow.pyfunc.load_model(f"models:/{model_name}@{CHAMPION}")

    def ask(images: np.ndarray) -> pd.DataFrame:
        return loaded.predict(pd.DataFrame({"image": [encode_png(i) for i in images]}))

    same = _tinted(40, seed=2)
    answer = ask(same)
    raw = offline_probabilities(model, package, same)
    expected = torch.from_numpy(raw).log().div(2.5).softmax(dim=1).numpy()
    np.testing.assert_allclose(np.stack(answer["probabilities"]), expected, atol=1e-5)
    assert answer["label"].tolist() == raw.argmax(1).tolist()  # the temperature keeps labels
    assert (answer["confidence"] < raw.max(1)).all()
    assert answer["out_of_distribution"].mean() < 0.2  # like the validation images
    noisy = np.random.default_rng(3).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    noise = ask(noisy)
    # an untrained probe: most noise images still land far from the tinted ones' logits
    assert noise["out_of_distribution"].mean() > 0.6
    with torch.no_grad():
        x = to_model_input(torch.from_numpy(noisy).permute(0, 3, 1, 2), 32, pre["mean"], pre["std"])
        offline = ood_scores(model(x), package["calibration"]["ood"]).numpy()
    np.testing.assert_allclose(noise["ood_score"], offline, rtol=1e-4)
    threshold = package["calibration"]["ood"]["threshold"]
    assert (noise["out_of_distribution"] == (noise["ood_score"] > threshold)).all()
