"""Helpers for multi-prompt server tests: versions of several methods on one tiny ViT whose
patches invert (PGN's RGB path), registered quickly in a real MLflow store, and requests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import torch
from registry_kit import make_package, smoke_for

from visprompt import methods
from visprompt.registry.integrity import encode_png
from visprompt.registry.promotion import log_prompt_model

KIND = "vit_p8"  # 3·P² = 192 >= D = 64: PGN's prompt inverts


def trained_version(
    root: Path, seed: int, method: str, **options: object
) -> tuple[Path, dict, methods.AdaptedModel]:
    """A method on the kit's backbone with every trained tensor moved off its init (an AP δ
    starts at zero), saved as an artifact with its package (PGN served as prompt inversion)."""
    artifact, package, model = make_package(root, seed, method=method, kind=KIND, **options)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.trainable_parameters():
            param.add_(0.5 * torch.randn(param.shape, generator=generator))
    methods.save(model, artifact)
    return artifact, package | {"pgn_serving": "rgb"}, model.eval()


def register_quickly(root: Path, name: str, artifact: Path, package: dict, model) -> str:
    """Log and register a version without promotion's smoke verification (seconds, not tens
    of seconds); the version's files and checksums are the real ones."""
    with mlflow.start_run():
        info = log_prompt_model(artifact, package, smoke_for(model, package), root)
    return str(mlflow.register_model(info.model_uri, name).version)


def images_payload(images: np.ndarray, models: list[str] | None = None) -> dict:
    """A request table of PNG images, with a `model` column when `models` is given."""
    encoded = [encode_png(image) for image in images]
    if models is None:
        return {"dataframe_split": {"columns": ["image"], "data": [[e] for e in encoded]}}
    rows = [[e, m] for e, m in zip(encoded, models, strict=True)]
    return {"dataframe_split": {"columns": ["image", "model"], "data": rows}}


def post(url: str, payload: object, timeout: float = 60) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())
