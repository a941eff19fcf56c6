"""Where a backbone's weights come from: the timm hub, a local file, or local pretraining.

Pure torch/timm (no Kedro, no MLflow): the backbone pipeline's node calls `materialise`.
Sources are tried in the configured order; a source that cannot serve (no network for the
hub, a missing file) is skipped with its reason, and the reasons are all reported if none
serves. Whatever the source, the weights are written to one local safetensors file whose
sha256 the spec records, so training and evaluation never touch the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from visprompt import backbones
from visprompt.data.sources import synthetic
from visprompt.training import Preprocess, TrainConfig, fit

log = logging.getLogger(__name__)

SOURCES = ("hub", "file", "pretrain")
_ENTRY_KEYS = {"name", "model_kwargs", "image_size", "weights", "file", "pretrained_cfg_overlay"}
EpochCallback = Callable[[int, dict[str, float]], None]


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


def fingerprint(*parts: Any) -> str:
    """sha256 of the parts as canonical JSON: names a pretraining checkpoint by its inputs."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def synthetic_splits(
    num_classes: int, num_images: int, image_size: int, seed: int, val_fraction: float
) -> tuple[TensorDataset, TensorDataset]:
    """Train/val TensorDatasets of (uint8 CHW, label) drawn from the synthetic source."""
    images, labels, _ = synthetic.generate(num_classes, num_images, image_size, seed)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels)
    n_val = max(num_classes, int(round(val_fraction * len(y))))
    return TensorDataset(x[n_val:], y[n_val:]), TensorDataset(x[:n_val], y[:n_val])


def pretrain(
    model: nn.Module,
    preprocess: Preprocess,
    settings: Mapping[str, Any],
    train: TrainConfig,
    on_epoch_end: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train `model` with its own K-class head on the synthetic source; return its numbers.

    `settings`: num_classes (K, must equal the model's head), num_images, seed, val_fraction.
    The source head is kept, so label-mapping methods can reuse it.
    """
    k = int(settings["num_classes"])
    if backbones.num_source_classes(model) != k:
        raise ValueError(
            f"pretraining on {k} synthetic classes needs a {k}-class head; set "
            f"model_kwargs.num_classes: {k} (the model has "
            f"{backbones.num_source_classes(model)})"
        )
    train_set, val_set = synthetic_splits(
        k,
        int(settings["num_images"]),
        preprocess.image_size,
        int(settings.get("seed", 0)),
        float(settings.get("val_fraction", 0.1)),
    )
    result = fit(model, train_set, val_set, preprocess, train, on_epoch_end=on_epoch_end)
    return {
        "num_classes": k,
        "train_images": len(train_set),
        "val_images": len(val_set),
        "best_epoch": result.best_epoch,
        "best_val_top1": result.best_val_top1,
        "train_time_s": result.train_time_s,
        "epochs_run": result.epochs_run,
    }


def _data_config(model: nn.Module, entry: Mapping[str, Any]) -> dict[str, Any]:
    """timm's preprocessing for `model`, with `image_size` (when set) as the input side."""
    config = backbones.data_config(model)
    if entry.get("image_size"):
        config["input_size"] = (config["input_size"][0], entry["image_size"], entry["image_size"])
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
    """Obtain weights for `entry` from its first source that serves; write them; return the spec.

    The spec (see docs/architecture.md, `backbone_specs`) is what `backbones.from_spec`
    needs to rebuild the model offline and refuse a changed file.
    """
    check_entry(key, entry)
    kwargs = dict(entry.get("model_kwargs") or {})
    failures: list[str] = []
    for source in entry["weights"]:
        try:
            model, origin, stats = _from_source(
                source, key, entry, kwargs, pretrain_settings, engine, checkpoint_root, on_epoch_end
            )
        except _SourceUnavailable as why:
            failures.append(f"{source}: {why}")
            log.warning("backbone '%s': source %s unavailable (%s)", key, source, why)
            continue
        path = Path(output_dir) / f"{key}.safetensors"
        sha = backbones.save_weights(model, path)
        return {
            "name": entry["name"],
            "model_kwargs": kwargs,
            "weights_path": path.as_posix(),
            "sha256": sha,
            "data_config": _data_config(model, entry),
            "num_source_classes": backbones.num_source_classes(model),
            "num_features": backbones.num_features(model),
            "total_params": sum(p.numel() for p in model.parameters()),
            "source": source,
            "origin": origin,
            "pretrain": stats,
        }
    raise RuntimeError(
        f"backbone '{key}': no weights source served ({'; '.join(failures)}); add 'pretrain' "
        "to backbone.models.<key>.weights for an offline fallback"
    )


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
) -> tuple[nn.Module, str, dict[str, Any]]:
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
        return backbones.create_backbone(name, weights=path, **kwargs), str(path), {}
    settings = dict(pretrain_settings)
    run_dir = Path(checkpoint_root) / f"{key}-{fingerprint(entry, settings, engine)[:16]}"
    train = TrainConfig.from_dict(
        {**settings.pop("train"), **engine, "checkpoint_dir": str(run_dir)}
    )
    torch.manual_seed(train.seed)  # the initial weights are part of the run
    model = backbones.create_backbone(name, **kwargs)
    preprocess = Preprocess.from_data_config(_data_config(model, entry))
    stats = pretrain(model, preprocess, settings, train, on_epoch_end)
    return model, f"pretrain:synthetic(seed={settings.get('seed', 0)})", stats
