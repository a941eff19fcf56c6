"""Helpers for registry tests: a tiny backbone and prompt written into a project root.

Importable by subprocesses (tests/ is on the pytest pythonpath and set in PYTHONPATH).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mlflow
import numpy as np
import timm
import torch
from tiny import TINY_BACKBONES

from visprompt import methods
from visprompt.backbones import data_config, save_weights
from visprompt.data.transforms import to_model_input
from visprompt.registry.promotion import Decision, SmokeSet, register_and_promote
from visprompt.registry.serving import ServingLimits

CLASSES = [str(i) for i in range(5)]

#: Backbones of registered test versions: the tiny ViT, and one whose patch embedding
#: inverts (3·P² = 192 >= D = 64), for PGN's RGB deployment.
BACKBONES = {
    "vit": TINY_BACKBONES["vit"],
    "vit_p8": (
        "vit_tiny_patch16_224",
        dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_classes=10),
    ),
}


def kit_backbone(kind: str = "vit") -> torch.nn.Module:
    name, kwargs = BACKBONES[kind]
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kwargs).eval()


def backbone_spec(root: Path, weights_name: str = "vit", kind: str = "vit") -> dict:
    """Write a tiny backbone's weights into the project and return its spec."""
    name, kwargs = BACKBONES[kind]
    path = root / "data" / "06_models" / "backbones" / f"{weights_name}.safetensors"
    sha = save_weights(kit_backbone(kind), path)
    return {
        "name": name,
        "model_kwargs": kwargs,
        "weights_path": str(path.relative_to(root)),
        "sha256": sha,
        "source": "pretrain",
    }


def make_package(
    root: Path,
    seed: int,
    weights_name: str = "vit",
    method: str = "linear_probe",
    kind: str = "vit",
    **options: object,
) -> tuple[Path, dict, methods.AdaptedModel]:
    """A method (default: a linear probe) with a seeded head, saved as a method artifact,
    plus its package."""
    spec = backbone_spec(root, weights_name, kind)
    model = methods.build(method, kit_backbone(kind), num_classes=len(CLASSES), **options)
    torch.manual_seed(seed)
    torch.nn.init.normal_(model.head.weight, std=1.0)
    artifact = methods.save(model, root / f"artifact_{seed}")
    cfg = data_config(model.backbone)
    package = {
        "class_names": CLASSES,
        "preprocessing": {
            "image_size": 32,
            "mean": list(cfg["mean"]),
            "std": list(cfg["std"]),
            "stored_size": 32,
        },
        "backbone": spec,
        "serving": dataclasses.asdict(ServingLimits()),
    }
    return artifact, package, model


def example_images(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def offline_probabilities(
    model: methods.AdaptedModel, package: dict, images: np.ndarray
) -> np.ndarray:
    """The method's own class probabilities on uint8 NHWC images (the training preprocessing)."""
    pre = package["preprocessing"]
    x = to_model_input(torch.from_numpy(images).permute(0, 3, 1, 2), 32, pre["mean"], pre["std"])
    with torch.no_grad():
        return model.eval()(x).softmax(-1).numpy()


def offline_labels(model: methods.AdaptedModel, package: dict, images: np.ndarray) -> np.ndarray:
    """The method's own predictions on uint8 NHWC images."""
    return offline_probabilities(model, package, images).argmax(-1)


def smoke_for(model: methods.AdaptedModel, package: dict, n: int = 12) -> SmokeSet:
    """Validation stand-ins labelled so the model scores exactly 3/4 on them."""
    images = example_images(n, seed=99)
    labels = offline_labels(model, package, images)
    wrong = n // 4
    labels[:wrong] = (labels[:wrong] + 1) % len(CLASSES)
    return SmokeSet(images, labels, accuracy=(n - wrong) / n, tolerance=0.01)


def register_package(
    root: Path,
    name: str,
    artifact: Path,
    package: dict,
    smoke: SmokeSet,
    metric: float,
    run: str = "run",
    margin: float = 0.01,
    method: str = "linear_probe",
) -> Decision:
    with mlflow.start_run():
        return register_and_promote(
            run=run,
            artifact_dir=artifact,
            package=package,
            smoke=smoke,
            model_name=name,
            metric_name="val_top1",
            metric=metric,
            margin=margin,
            # as `packaging.candidate` records them
            lineage={
                "git_commit": "abc",
                "data_hash": "d1",
                "method": method,
                "val_top1_seed_mean": repr(float(metric)),
            },
            backbone_root=root,
        )


def register_candidate(
    root: Path, name: str, seed: int, metric: float, margin: float = 0.01
) -> Decision:
    """Package a seeded linear probe and run it through registration and promotion."""
    artifact, package, model = make_package(root, seed)
    smoke = smoke_for(model, package)
    return register_package(root, name, artifact, package, smoke, metric, f"run{seed}", margin)


def stored_file(name: str, version: str, relative: str) -> Path:
    """The file `relative` (e.g. artifacts/prompt/prompt.safetensors) of a version, in the
    store itself (not a downloaded copy): what a corruption test damages."""
    from urllib.parse import urlparse

    source = mlflow.MlflowClient().get_model_version(name, version).source  # models:/m-<id>
    model_id = source.removeprefix("models:/")
    return Path(urlparse(mlflow.get_logged_model(model_id).artifact_location).path) / relative


def flip_byte(path: Path, offset: int = -3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))
