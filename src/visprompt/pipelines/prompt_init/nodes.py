"""Node of the prompt_init pipeline: one frozen pass per backbone, files per init, MLflow."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import torch

from visprompt import backbones, prompt_init
from visprompt.pipelines import tracking
from visprompt.training import Preprocess

log = logging.getLogger(__name__)

_INIT_KEYS = {"strategy", "variant", "num_prompts", "backbone", "seed", "max_tokens"}
_WHERE = "parameters_prompt_init.yml: prompt_init"


def init_configs(params: Mapping[str, Any]) -> dict[str, tuple[str, prompt_init.InitConfig]]:
    """name -> (backbone key, InitConfig) from `prompt_init.inits`; errors name the field."""
    inits = params.get("inits") or {}
    if not inits:
        raise ValueError(f"{_WHERE}.inits is empty; configure at least one initialisation")
    kmeans = dict(params.get("kmeans") or {})
    configs = {}
    for name, entry in inits.items():
        unknown = sorted(set(entry) - _INIT_KEYS)
        if unknown:
            raise ValueError(
                f"{_WHERE}.inits.{name}: unknown key(s) {unknown}; allowed {sorted(_INIT_KEYS)}"
            )
        try:
            config = prompt_init.InitConfig(
                strategy=entry.get("strategy", ""),
                num_prompts=int(entry.get("num_prompts", 0)),
                variant=entry.get("variant", "deep"),
                seed=int(entry.get("seed", params.get("seed", 0))),
                max_tokens=entry.get("max_tokens", params.get("max_tokens")),
                kmeans_max_iter=int(kmeans.get("max_iter", 100)),
                kmeans_tol=float(kmeans.get("tol", 1e-4)),
            )
        except ValueError as exc:
            raise ValueError(f"{_WHERE}.inits.{name}: {exc}") from exc
        configs[name] = (str(entry.get("backbone", params["backbone"])), config)
    return configs


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _log(name: str, path: Path, metadata: Mapping[str, Any]) -> None:
    """Params, per-layer seconds (step = layer) and the files of one init, in a nested run."""
    with tracking.nested_run(f"prompt_init_{name}", tags={"visprompt.stage": "prompt_init"}):
        tracking.log_params(
            {k: metadata[k] for k in ("strategy", "variant", "num_prompts", "layers", "seed")}
            | {"backbone_sha256": metadata["backbone_sha256"], "data_hash": metadata["data_hash"]}
        )
        for layer, seconds in metadata["seconds_per_layer"].items():
            mlflow.log_metric("seconds_per_layer", seconds, step=int(layer))
        tracking.log_numbers(
            {"seconds_total": metadata["seconds_total"], "images_used": metadata["images_used"]}
        )
        mlflow.log_artifact(str(path), "prompt_init")
        mlflow.log_artifact(str(path.with_suffix(".json")), "prompt_init")


def build_prompt_inits(
    shards: str,
    validation_summary: Mapping[str, Any],
    backbone_specs: Mapping[str, Mapping[str, Any]],
    params: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """`prompt_inits`: name -> {path, metadata}; one backbone pass per backbone key.

    Writes `<output_dir>/<name>.safetensors` (prompts (layers, p, D)) and `<name>.json`.
    """
    if not validation_summary.get("success"):
        raise ValueError(
            "prompt_init refuses data that failed validation (validation_summary.success is "
            "false); fix the data and rerun `kedro run --pipelines data_validation`"
        )
    configs = init_configs(params)
    output_dir = Path(params["output_dir"])
    device = _device(str(params.get("device", "auto")))
    budget = int(float(params["memory_budget_mb"]) * 2**20)
    index: dict[str, dict[str, Any]] = {}
    for key in sorted({backbone for backbone, _ in configs.values()}):
        if key not in backbone_specs:
            raise ValueError(
                f"{_WHERE}: backbone '{key}' is not in backbone_specs "
                f"({', '.join(sorted(backbone_specs))}); see parameters_backbone.yml"
            )
        spec = backbone_specs[key]
        model = backbones.from_spec(spec)
        stream = prompt_init.ShardStream(
            shards,
            str(params.get("split", "train")),
            Preprocess.from_data_config(spec["data_config"]),
            batch_size=int(params.get("batch_size", 128)),
            max_images=params.get("max_images"),
            seed=int(params.get("seed", 0)),
            device=device,
        )
        group = {name: c for name, (b, c) in configs.items() if b == key}
        results = prompt_init.build_prompt_inits(
            model,
            stream,
            group,
            memory_budget_bytes=budget,
            device=device,
            lineage={
                "backbone": key,
                "backbone_sha256": spec["sha256"],
                "data_hash": validation_summary.get("data_hash"),
                "split": stream.split,
            },
        )
        for name, result in results.items():
            path = prompt_init.save_prompt_init(output_dir, name, result)
            _log(name, path, result.metadata)
            log.info(
                "prompt_init %s: %s %s in %.2f s",
                name,
                result.metadata["strategy"],
                tuple(result.prompts.shape),
                result.metadata["seconds_total"],
            )
            index[name] = {"path": path.as_posix(), "metadata": result.metadata}
    return index
