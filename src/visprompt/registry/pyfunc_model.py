"""The registered prompt artifact as an MLflow pyfunc model (defined from code, typed).

A version holds only the method's tensors and head (safetensors), its config, the class
names, the preprocessing, a smoke set, the visprompt code it runs (`code/visprompt`, MLflow's
`code_paths`), the sha256 of each of those files and a *reference* to the backbone (see
`backbone_store`). Loading checks `package.json` against the digest the registry recorded,
every recorded checksum and the backbone's, and refuses a mismatch naming the file, so a
version never runs on corrupted or foreign weights, from whatever directory it is loaded.
It serves the method's deployed form (`AdaptedModel.served`): LoRA merged, AP folded, PGN
through prompt inversion.

Request format (REST `/invocations` or `predict`): a DataFrame with one column `image`
holding base64-encoded PNG/JPEG bytes, e.g.
    {"dataframe_split": {"columns": ["image"], "data": [["iVBORw0KGgo..."]]}}
Response: one row per image with `label` (int), `class_name`, `confidence` and
`probabilities` (one per class, in `class_names` order), softmax(logits / temperature) with
the version's temperature fitted on validation (1 when its package records none), and
`out_of_distribution` (bool) with its `ood_score`: the distance of the image's logits to the
nearest validation class mean, flagged beyond the version's threshold (the distance that 5 %
of validation images exceed; `evaluation.calibration`). Versions without a detector answer
`out_of_distribution: false` and `ood_score: NaN`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from torch import nn

from visprompt import methods
from visprompt.data.transforms import to_model_input
from visprompt.evaluation.calibration import ood_scores
from visprompt.registry.backbone_store import load_backbone
from visprompt.registry.integrity import verify_checksums, verify_package_file
from visprompt.registry.serving import ImageDecoder, ServingLimits

PACKAGE_FILE = "package.json"
PROMPT_ARTIFACT = "prompt"
PACKAGE_ARTIFACT = "package"
#: The version's copy of the visprompt package, relative to the model folder (`code_paths`).
CODE_DIR = "code"
#: The models-from-code file logged as the version's model definition.
MODEL_CODE = Path(__file__).with_name("model_code.py")


def read_package(package_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(package_dir) / PACKAGE_FILE).read_text())


def load_version(
    package_dir: Path,
    prompt_dir: Path,
    backbones: Callable[[dict[str, Any]], nn.Module] = load_backbone,
) -> tuple[dict[str, Any], methods.AdaptedModel]:
    """(package, trained method) of a version's files (`<model>/artifacts/{package,prompt}`),
    package.json checked against its registration and every checksum verified; `backbones`
    turns the package's backbone reference into the model (the multi-prompt server passes
    a cache, so versions on one backbone share it)."""
    model_dir = package_dir.parents[1]
    verify_package_file(model_dir, package_dir / PACKAGE_FILE)
    package = read_package(package_dir)
    checksums = package["checksums"]
    verify_checksums(prompt_dir, checksums[PROMPT_ARTIFACT], "prompt artifact")
    verify_checksums(package_dir, checksums[PACKAGE_ARTIFACT], "version package")
    if CODE_DIR in checksums:  # versions registered before they carried their code
        verify_checksums(model_dir / CODE_DIR, checksums[CODE_DIR], "version code")
    return package, methods.load(prompt_dir, backbones(package["backbone"]))


def rgb_serving(package: dict[str, Any]) -> bool:
    """`pgn_serving: rgb` asks for input-space serving (PGN: prompt inversion); versions
    that record none serve the token path, as they were verified."""
    return package.get("pgn_serving", "token") == "rgb"


def predictions(
    logits: torch.Tensor, class_names: list[str], calibration: dict[str, Any]
) -> pd.DataFrame:
    """One row per image: label, class name, confidence and probabilities at the version's
    temperature, the OOD score and flag (the one answer format of every server)."""
    ood = calibration.get("ood")
    probs = (logits / float(calibration.get("temperature", 1.0))).softmax(dim=-1)
    confidence, label = probs.max(dim=-1)
    scores = np.full(len(logits), np.nan) if ood is None else ood_scores(logits, ood).numpy()
    return pd.DataFrame(
        {
            "label": label.numpy().astype(np.int64),
            "class_name": [class_names[i] for i in label.tolist()],
            "confidence": confidence.numpy().astype(np.float64),
            "probabilities": list(probs.numpy().astype(np.float64)),
            "out_of_distribution": scores > (ood or {}).get("threshold", np.inf),
            "ood_score": scores.astype(np.float64),
        }
    )


class PromptClassifier(mlflow.pyfunc.PythonModel):
    """Frozen backbone (by reference) + the method's tensors, behind pyfunc `predict`."""

    def load_context(self, context: Any) -> None:
        package, trained = load_version(
            Path(context.artifacts[PACKAGE_ARTIFACT]), Path(context.artifacts[PROMPT_ARTIFACT])
        )
        self.class_names: list[str] = package["class_names"]
        self.preprocessing: dict[str, Any] = package["preprocessing"]
        self.decode = ImageDecoder(
            ServingLimits.resolve(package.get("serving")),
            int(self.preprocessing["stored_size"]),
        )
        self.model = trained.served(rgb_serving(package), package["preprocessing"])
        self.calibration: dict[str, Any] = package.get("calibration") or {}

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW at the stored size -> class logits (the training preprocessing)."""
        pre = self.preprocessing
        with torch.no_grad():
            x = to_model_input(images, int(pre["image_size"]), pre["mean"], pre["std"])
            return self.model(x)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return predictions(
            self.logits(self.decode(model_input)), self.class_names, self.calibration
        )
