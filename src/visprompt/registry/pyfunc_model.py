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
`probabilities` (one per class, in `class_names` order).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from visprompt import methods
from visprompt.data.transforms import to_model_input
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


class PromptClassifier(mlflow.pyfunc.PythonModel):
    """Frozen backbone (by reference) + the method's tensors, behind pyfunc `predict`."""

    def load_context(self, context: Any) -> None:
        package_dir = Path(context.artifacts[PACKAGE_ARTIFACT])
        prompt_dir = Path(context.artifacts[PROMPT_ARTIFACT])
        model_dir = package_dir.parents[1]  # <model>/artifacts/package
        verify_package_file(model_dir, package_dir / PACKAGE_FILE)
        package = read_package(package_dir)
        checksums = package["checksums"]
        verify_checksums(prompt_dir, checksums[PROMPT_ARTIFACT], "prompt artifact")
        verify_checksums(package_dir, checksums[PACKAGE_ARTIFACT], "version package")
        if CODE_DIR in checksums:  # versions registered before they carried their code
            verify_checksums(model_dir / CODE_DIR, checksums[CODE_DIR], "version code")
        self.class_names: list[str] = package["class_names"]
        self.preprocessing: dict[str, Any] = package["preprocessing"]
        self.decode = ImageDecoder(
            ServingLimits.resolve(package.get("serving")),
            int(self.preprocessing["stored_size"]),
        )
        trained = methods.load(prompt_dir, load_backbone(package["backbone"]))
        # `pgn_serving: rgb` asks for input-space serving (PGN: prompt inversion); versions
        # that record none serve the token path, as they were verified
        rgb = package.get("pgn_serving", "token") == "rgb"
        self.model = trained.served(rgb, package["preprocessing"])

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW at the stored size -> class probabilities (the training preprocessing)."""
        pre = self.preprocessing
        with torch.no_grad():
            x = to_model_input(images, int(pre["image_size"]), pre["mean"], pre["std"])
            return self.model(x).softmax(dim=-1)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        probs = self.probabilities(self.decode(model_input))
        confidence, label = probs.max(dim=-1)
        return pd.DataFrame(
            {
                "label": label.numpy().astype(np.int64),
                "class_name": [self.class_names[i] for i in label.tolist()],
                "confidence": confidence.numpy().astype(np.float64),
                "probabilities": list(probs.numpy().astype(np.float64)),
            }
        )
