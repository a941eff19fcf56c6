"""What a version must prove before it is loaded, promoted or rolled back to.

- Checksums: `package.json` records the sha256 of every file of the prompt artifact, of the
  smoke set and of the code the version carries; every load recomputes them and refuses a
  mismatch naming the file.
- The whole version: `package.json` itself is checked against the sha256 recorded in the
  tracking store at registration (a tag of the version's logged model, in the database, not
  among the files): a package whose class names were changed, or whose checksums were
  rewritten to match corrupted weights, is refused naming `package.json`.
- Smoke set: validation images (uint8, as stored by ingestion) with their labels, and the
  candidate's validation accuracy on them; the check predicts them through the full pyfunc
  path (PNG in, the serving preprocessing) and must reproduce that accuracy within a
  tolerance, so flipped bits or a wrong backbone cannot pass on label ranges alone.
"""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import is_tracking_uri_set
from PIL import Image
from safetensors.torch import load_file, save_file

from visprompt.backbones import sha256_file

SMOKE_FILE = "smoke.safetensors"
#: Tag of a version's logged model: sha256 of its package.json, set at registration.
PACKAGE_DIGEST_TAG = "visprompt.package_sha256"

log = logging.getLogger(__name__)


def file_checksums(root: str | Path) -> dict[str, str]:
    """{relative posix path: sha256} of every file under `root`."""
    root = Path(root)
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def verify_checksums(root: str | Path, expected: dict[str, str], what: str) -> None:
    """Refuse missing, changed or extra tensor files under `root`, naming the first."""
    root = Path(root)
    for name, sha in sorted(expected.items()):
        file = root / name
        if not file.is_file():
            raise ValueError(f"{what}: {file} is missing; the version is incomplete")
        actual = sha256_file(file)
        if actual != sha:
            raise ValueError(
                f"{what}: {file} has sha256 {actual[:12]}..., the version records "
                f"{sha[:12]}...: the file is corrupted; roll back "
                "(`python -m visprompt.registry rollback --name NAME`) or re-register it"
            )
    extra = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.safetensors")
        if p.relative_to(root).as_posix() not in expected
    )
    if extra:
        raise ValueError(f"{what}: tensor files {extra} under {root} are not in the version")


def recorded_package_digest(model_id: str | None) -> tuple[str | None, str]:
    """(sha256 of package.json recorded at registration or None, why it is None)."""
    if not model_id:
        return None, "its MLmodel names no logged model"
    if not is_tracking_uri_set():
        return None, "no tracking store is set (MLFLOW_TRACKING_URI)"
    try:
        tags = MlflowClient().get_logged_model(model_id).tags
    except MlflowException as err:
        return None, f"the tracking store has no logged model {model_id} ({err.message})"
    if PACKAGE_DIGEST_TAG not in tags:
        return "", f"logged model {model_id} was registered before whole-version digests"
    return tags[PACKAGE_DIGEST_TAG], ""


def verify_package_file(model_dir: str | Path, package_file: str | Path) -> None:
    """Refuse a package.json other than the one registered (see the module doc)."""
    package_file = Path(package_file)
    model_id = Model.load(str(Path(model_dir) / "MLmodel")).model_id
    recorded, why = recorded_package_digest(model_id)
    if recorded == "":  # an older version: its per-file checksums still hold
        log.warning("%s: %s; re-register it to have the whole version checked", package_file, why)
        return
    if recorded is None:  # a version also reaches its backbone through its store
        raise ValueError(
            f"{package_file} cannot be checked against its registration: {why}. Load the "
            "version through its registry (models:/NAME/VERSION or models:/NAME@champion) "
            "with MLFLOW_TRACKING_URI set to the store it was registered in"
        )
    actual = sha256_file(package_file)
    if actual != recorded:
        raise ValueError(
            f"{package_file} has sha256 {actual[:12]}..., but the registry recorded "
            f"{recorded[:12]}... when the version was registered: the version's package "
            "(class names, preprocessing, or the checksums of its other files) was changed "
            "afterwards; roll back (`python -m visprompt.registry rollback --name NAME`) or "
            "re-register it"
        )


def encode_png(image: np.ndarray) -> str:
    """uint8 HWC RGB -> base64 PNG string (the request format)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def write_smoke_set(path: str | Path, images: np.ndarray, labels: np.ndarray) -> str:
    """Store the smoke images (uint8 NHWC) and labels as safetensors; return the sha256."""
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(
            f"smoke set needs as many labels as images and at least one ({len(images)} images, "
            f"{len(labels)} labels): the validation split is empty"
        )
    # copies: the split's arrays may be read-only views, which torch warns about sharing
    save_file(
        {
            "images": torch.from_numpy(np.array(images, dtype=np.uint8, order="C")),
            "labels": torch.from_numpy(np.array(labels, dtype=np.int64)),
        },
        str(path),
    )
    return sha256_file(path)


def read_smoke_set(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    tensors = load_file(str(path))
    return tensors["images"].numpy(), tensors["labels"].numpy()


def smoke_frame(images: np.ndarray) -> pd.DataFrame:
    """The smoke images as a request table."""
    return pd.DataFrame({"image": [encode_png(image) for image in images]})


def check_accuracy(
    labels: np.ndarray, predicted: np.ndarray, expected: float, tolerance: float, what: str
) -> float:
    """Accuracy of `predicted`; refuse it when it is off the recorded one by > tolerance."""
    accuracy = float(np.mean(np.asarray(predicted) == np.asarray(labels)))
    if abs(accuracy - expected) > tolerance:
        raise RuntimeError(
            f"{what}: smoke accuracy {accuracy:.4f} on {len(labels)} stored validation images "
            f"does not reproduce the recorded {expected:.4f} (tolerance {tolerance}): the "
            "weights or the preprocessing differ from what was validated"
        )
    return accuracy
