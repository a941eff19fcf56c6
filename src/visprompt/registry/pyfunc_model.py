"""The registered prompt artifact as an MLflow pyfunc model.

A version holds only the method's tensors and head (safetensors), its config, the class
names, the preprocessing, and a *reference* to the backbone (timm name, where its weights
live, sha256). The backbone weights are resolved at load time and refused when their
checksum differs, so a version never silently runs on the wrong backbone.

Request format (REST `/invocations` or `predict`): a DataFrame with one column `image`
holding base64-encoded PNG/JPEG bytes, e.g.
    {"dataframe_split": {"columns": ["image"], "data": [["iVBORw0KGgo..."]]}}
Response: one row per image with `label` (int), `class_name` and `confidence`.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from PIL import Image, UnidentifiedImageError

from visprompt import methods
from visprompt.backbones import from_spec
from visprompt.data.transforms import to_model_input

PACKAGE_FILE = "package.json"
PROMPT_ARTIFACT = "prompt"
PACKAGE_ARTIFACT = "package"
PROJECT_DIR_ENV = "VISPROMPT_PROJECT_DIR"


def _bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def decode_images(frame: pd.DataFrame, image_size: int) -> torch.Tensor:
    """Base64 image strings -> uint8 NCHW at the model's size; clear errors on bad input."""
    if not isinstance(frame, pd.DataFrame) or "image" not in frame.columns:
        raise _bad_request(
            "expected a table with a column 'image' of base64-encoded PNG/JPEG images, e.g. "
            '{"dataframe_split": {"columns": ["image"], "data": [["<base64>"]]}}'
        )
    if len(frame) == 0:
        raise _bad_request("empty batch: send at least one image")
    batch = []
    for row, value in enumerate(frame["image"]):
        try:
            raw = base64.b64decode(value, validate=True)
            with Image.open(io.BytesIO(raw)) as img:
                rgb = img.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
        except (binascii.Error, TypeError, ValueError, UnidentifiedImageError, OSError) as err:
            raise _bad_request(
                f"row {row}: 'image' is not a base64-encoded PNG/JPEG image ({err})"
            ) from err
        batch.append(np.asarray(rgb, dtype=np.uint8))
    return torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()


def resolve_weights_path(relative: str, registered_root: str | None) -> Path:
    """Find a project-relative weights file: $VISPROMPT_PROJECT_DIR, the cwd, then the
    project root recorded at registration."""
    roots = [os.environ.get(PROJECT_DIR_ENV), os.getcwd(), registered_root]
    for root in filter(None, roots):
        candidate = Path(root) / relative
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"backbone weights '{relative}' not found under {[r for r in roots if r]}: run "
        f"`dvc pull` in the project, or set {PROJECT_DIR_ENV} to the project directory"
    )


class PromptClassifier(mlflow.pyfunc.PythonModel):
    """Frozen backbone (by reference) + the method's tensors, behind pyfunc `predict`."""

    def load_context(self, context: Any) -> None:
        package = json.loads((Path(context.artifacts[PACKAGE_ARTIFACT]) / PACKAGE_FILE).read_text())
        spec = dict(package["backbone"])
        if spec.get("weights_path"):
            spec["weights_path"] = str(
                resolve_weights_path(spec["weights_path"], package.get("project_root"))
            )
        self.class_names: list[str] = package["class_names"]
        self.preprocessing: dict[str, Any] = package["preprocessing"]
        self.model = methods.load(context.artifacts[PROMPT_ARTIFACT], from_spec(spec)).eval()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        pre = self.preprocessing
        images = decode_images(model_input, int(pre["image_size"]))
        with torch.no_grad():
            x = to_model_input(images, int(pre["image_size"]), pre["mean"], pre["std"])
            probs = self.model(x).softmax(dim=-1)
        confidence, label = probs.max(dim=-1)
        return pd.DataFrame(
            {
                "label": label.numpy().astype(np.int64),
                "class_name": [self.class_names[i] for i in label.tolist()],
                "confidence": confidence.numpy().astype(np.float64),
            }
        )


def encode_png(image: np.ndarray) -> str:
    """uint8 HWC RGB -> base64 PNG string (the request format)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
