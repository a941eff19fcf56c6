"""The registered versions a multi-prompt server holds: each backbone loaded once (by its
checksum), every version loaded on it through the registry's own one-version loader, and
aliases followed: a moved alias loads the new version first, then swaps it in, so a request
in flight finishes on the version it started with.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from visprompt.data.transforms import to_model_input
from visprompt.methods.base import SharedForm
from visprompt.registry.backbone_store import load_backbone
from visprompt.registry.pyfunc_model import (
    PACKAGE_ARTIFACT,
    PROMPT_ARTIFACT,
    load_version,
    rgb_serving,
)
from visprompt.registry.serving import ImageDecoder, ServingLimits

log = logging.getLogger(__name__)
_REF = re.compile(r"^(?P<name>[^@/]+)(?:@(?P<alias>[^@/]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class VersionRef:
    """`name@alias` (followed when the alias moves) or `name/version` (fixed)."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> VersionRef:
        match = _REF.match(text.strip())
        if match is None:
            raise ValueError(
                f"model reference {text!r} is neither NAME@ALIAS (e.g. digits@champion) nor "
                "NAME/VERSION (e.g. digits/3)"
            )
        return cls(match["name"], match["alias"], match["version"])

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


def backbone_key(reference: dict[str, Any]) -> str:
    """The checksum naming a version's backbone (weights file or hub tensors)."""
    return str(reference.get("sha256") or reference["tensors_sha256"])


class Backbones:
    """One frozen backbone per checksum, shared by every version trained on it."""

    def __init__(self, load: Callable[[dict[str, Any]], nn.Module] = load_backbone) -> None:
        self._load, self._models, self._lock = load, {}, threading.Lock()
        self.normalisation: dict[str, dict[str, Any]] = {}
        #: Held while a backbone computes (its forward hooks are set) and while a version is
        #: built on it (`methods.load` copies its modules): a copy never takes a hook along.
        self.in_use = threading.Lock()

    def get(self, reference: dict[str, Any]) -> nn.Module:
        key = backbone_key(reference)
        with self._lock:
            if key not in self._models:
                self._models[key] = self._load(reference)
            return self._models[key]

    def __getitem__(self, key: str) -> nn.Module:
        return self._models[key]

    def checksums(self) -> list[str]:
        return list(self._models)


@dataclass(frozen=True)
class Loaded:
    """One version ready to serve: its `form` on the shared backbone, else its own `model`."""

    name: str
    version: str
    method: str
    class_names: list[str]
    calibration: dict[str, Any]
    preprocessing: dict[str, Any]
    decode: ImageDecoder
    backbone: str
    form: SharedForm | None
    model: nn.Module | None

    def model_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW at the stored size -> the version's training preprocessing."""
        pre = self.preprocessing
        return to_model_input(images, int(pre["image_size"]), pre["mean"], pre["std"])

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "method": self.method,
            "backbone": self.backbone[:12],
            "shared_backbone": self.form is not None,
        }


def load(
    name: str,
    version: str,
    backbones: Backbones,
    decoders: dict[tuple[ServingLimits, int], ImageDecoder],
) -> Loaded:
    """Version `version` of `name` from the tracking store, on the shared backbones; versions
    with the same limits and stored size share one decoder (`decoders`), so the images of a
    mixed batch are decoded in one pass."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=tmp
            )
        )
        artifacts = local / "artifacts"
        with backbones.in_use:
            package, trained = load_version(
                artifacts / PACKAGE_ARTIFACT, artifacts / PROMPT_ARTIFACT, backbones.get
            )
            trained.eval()
            pre, rgb = package["preprocessing"], rgb_serving(package)
            form = trained.shared_form(rgb, pre)
            model = None if form is not None else trained.served(rgb, pre)
    key = backbone_key(package["backbone"])
    decoding = (ServingLimits.resolve(package.get("serving")), int(pre["stored_size"]))
    backbones.normalisation.setdefault(key, {"mean": pre["mean"], "std": pre["std"]})
    return Loaded(
        name=name,
        version=str(version),
        method=trained.name,
        class_names=list(package["class_names"]),
        calibration=package.get("calibration") or {},
        preprocessing=pre,
        decode=decoders.setdefault(decoding, ImageDecoder(*decoding)),
        backbone=key,
        form=form,
        model=model,
    )


class VersionSet:
    """The versions named at start, kept current: `refresh` resolves every alias and swaps
    in a moved one after loading it (a failed load keeps the old version, logged)."""

    def __init__(self, refs: list[VersionRef], backbones: Backbones | None = None) -> None:
        if not refs:
            raise ValueError("no model to serve: give at least one --model NAME@ALIAS|NAME/VER")
        self.refs, self.backbones = refs, backbones or Backbones()
        self._current: dict[str, Loaded] = {}
        self._decoders: dict[tuple[ServingLimits, int], ImageDecoder] = {}
        self._lock = threading.Lock()  # one refresh at a time
        self.refresh(strict=True)

    @staticmethod
    def resolve(ref: VersionRef) -> str:
        if ref.version is not None:
            return ref.version
        return str(MlflowClient().get_model_version_by_alias(ref.name, ref.alias).version)

    def refresh(self, strict: bool = False) -> list[str]:
        """Resolve every reference; load and swap in what changed. Returns what moved."""
        moved = []
        with self._lock:
            loaded = {(v.name, v.version): v for v in self._current.values()}
            for ref in self.refs:
                try:
                    version = self.resolve(ref)
                    entry = loaded.get((ref.name, version)) or load(
                        ref.name, version, self.backbones, self._decoders
                    )
                except Exception as err:
                    if strict:
                        raise ValueError(f"cannot serve {ref}: {err}") from err
                    log.warning("%s: keeping version %s (%s)", ref, self.get(str(ref)).version, err)
                    continue
                loaded[(ref.name, version)] = entry
                if self._current.get(str(ref)) is not entry:
                    moved.append(f"{ref} -> version {version}")
                    self._current = self._current | {str(ref): entry}  # a new dict: readers
                    # holding the old one finish on it
        return moved

    def follow(self, interval_s: float) -> threading.Thread:
        """A daemon thread refreshing every `interval_s` seconds (alias moves, no restart)."""

        def loop() -> None:
            while True:
                time.sleep(interval_s)
                for line in self.refresh():
                    log.warning("alias moved: %s", line)

        thread = threading.Thread(target=loop, name="alias-follower", daemon=True)
        thread.start()
        return thread

    def get(self, text: str) -> Loaded:
        """A served version by its reference as started (`name@alias`, `name/version`) or by
        the `name/version` an alias currently resolves to."""
        current = self._current
        if text in current:
            return current[text]
        for entry in current.values():
            if f"{entry.name}/{entry.version}" == text:
                return entry
        raise KeyError(
            f"model {text!r} is not served here; served: "
            f"{sorted(set(current) | {f'{v.name}/{v.version}' for v in current.values()})}"
        )

    def describe(self) -> dict[str, dict[str, Any]]:
        return {ref: entry.describe() for ref, entry in self._current.items()}
