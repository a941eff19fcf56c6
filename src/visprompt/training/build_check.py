"""Each run's method built on a stand-in of its backbone before any work starts.

A mistake only the built model reveals (an AP layer the backbone does not have, a token
method on a CNN) would otherwise surface when that run's node starts, after the data, the
backbones and every earlier run. The stand-in is the configured timm constructor with the
configured kwargs and input side on the meta device: the same modules and layer names,
no memory, no weights, no data (~1 s of CPU for the embedded default's 18 runs, one stand-in
per backbone). A method that cannot be built on the meta device is retried on a randomly
initialised CPU copy, so a limit of the meta device is never reported as the user's mistake.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from visprompt import backbones, methods
from visprompt.training.runs import BACKBONE_FILE, ConfigError, RunSpec, _where

#: Classes a stand-in is built for: the fewest a dataset may have (data_validation.min_classes),
#: so a limit that depends on the class count (a label mapping) is never refused wrongly.
NUM_CLASSES = 2

#: What a method raises for a configuration it refuses (the meta device raises others).
_REFUSALS = (ValueError, TypeError, KeyError)

_STAND_INS: dict[tuple[str, str], nn.Module] = {}


def stand_in(model_key: str, entry: Mapping[str, Any], device: str = "meta") -> nn.Module:
    """The backbone of `backbone.models.<model_key>` without its weights, cached per entry."""
    key = (json.dumps(dict(entry), sort_keys=True, default=str), device)
    if key not in _STAND_INS:
        size = entry.get("image_size")
        spec = {
            "name": entry.get("name"),
            "model_kwargs": entry.get("model_kwargs"),
            "data_config": {"input_size": [3, int(size), int(size)]} if size else None,
        }
        try:
            with torch.device(device):
                _STAND_INS[key] = backbones.from_spec(spec)
        except Exception as error:  # noqa: BLE001 - any constructor failure is the entry's
            raise ConfigError(
                f"{BACKBONE_FILE}: backbone.models.{model_key}: timm cannot build "
                f"'{entry.get('name')}' with model_kwargs {entry.get('model_kwargs') or {}} "
                f"({type(error).__name__}: {error}); fix the name (a timm model) or the kwargs"
            ) from None
    return _STAND_INS[key]


def check_builds(
    runs: Mapping[str, RunSpec], backbone_params: Mapping[str, Any], section: str = "training"
) -> None:
    """Build every run's method on its backbone's stand-in; the first refusal is a
    `ConfigError` naming the run, its options and the method's own reason (an unknown AP
    layer lists the valid ones). Runs whose backbone this run list does not build are left
    to the recipe that builds it (as `validate_runs` does)."""
    build = backbone_params.get("build") or {}
    models = backbone_params.get("models") or {}
    for name, spec in runs.items():
        model_key = build.get(spec.backbone)
        if model_key not in models:
            continue  # unknown keys were refused by validate_runs / the backbone pipeline
        # an SPT init arrives as a tensor from the prompt_init pipeline: built here as the
        # default init, which has the same modules
        options = {k: v for k, v in spec.options.items() if not (spec.prompt_init and k == "init")}
        try:
            _build(spec, model_key, models[model_key], options)
        except ConfigError:
            raise  # the backbone entry's own mistake, already one paragraph
        except _REFUSALS as error:
            raise ConfigError(
                f"{_where(name, 'options', section=section)}: method '{spec.method}' cannot "
                f"be built on backbone '{spec.backbone}' ({models[model_key].get('name')}, "
                f"backbone.models.{model_key}): {error} Fix the run's options or its backbone "
                "(checked on a stand-in of the backbone before any work)."
            ) from None


def _build(spec: RunSpec, model_key: str, entry: Mapping[str, Any], options: dict) -> None:
    try:
        with torch.device("meta"):
            methods.build(spec.method, stand_in(model_key, entry), NUM_CLASSES, **options)
    except _REFUSALS:
        raise
    except Exception:  # noqa: BLE001 - the meta device's limit, not the run's: build for real
        methods.build(spec.method, stand_in(model_key, entry, "cpu"), NUM_CLASSES, **options)
