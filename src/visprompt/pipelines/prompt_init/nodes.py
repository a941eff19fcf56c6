"""Node of the prompt_init pipeline: one frozen pass per backbone, files per init, MLflow."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from visprompt import backbones, prompt_init
from visprompt.backbones import sha256_file
from visprompt.pipelines import tracking
from visprompt.pipelines.tracking import KEY_TAG
from visprompt.prompt_init.config import WHERE, init_configs
from visprompt.training import Placement, Preprocess
from visprompt.weights import fingerprint


def _placement(device: str, engine: Mapping[str, Any] | None) -> Placement:
    """`run`: the training engine's accelerator and precision; else that device, in fp32."""
    if device == "run":
        return Placement.from_engine(engine or {})
    return Placement.on(device)


def _log(name: str, path: Path, metadata: Mapping[str, Any]) -> None:
    """Params, per-layer seconds (step = layer) and files of one init, in a nested run that
    exists only for new prompts (which a catalog entry cannot decide)."""
    params = {k: metadata[k] for k in ("strategy", "variant", "num_prompts", "layers", "seed")}
    params |= {"backbone_sha256": metadata["backbone_sha256"], "data_hash": metadata["data_hash"]}
    key = fingerprint(name, params, sha256_file(path))
    if tracking.finished_run(key) is not None:
        return
    tags = {"visprompt.stage": "prompt_init", KEY_TAG: key}
    with tracking.nested_run(f"prompt_init_{name}", tags=tags):
        tracking.log_params(params)
        tracking.log_steps("seconds_per_layer", metadata["seconds_per_layer"])
        tracking.log_numbers(
            {"seconds_total": metadata["seconds_total"], "images_used": metadata["images_used"]}
        )
        tracking.log_files([path, path.with_suffix(".json")], "prompt_init")


def _stream(
    shards: str, spec: Mapping[str, Any], params: Mapping[str, Any], device: str
) -> prompt_init.ShardStream:
    """The configured split through the backbone's preprocessing, batched on `device`."""
    return prompt_init.ShardStream(
        shards,
        str(params.get("split", "train")),
        Preprocess.from_data_config(spec["data_config"]),
        batch_size=int(params.get("batch_size", 128)),
        max_images=params.get("max_images"),
        seed=int(params.get("seed", 0)),
        device=device,
    )


def build_prompt_inits(
    shards: str,
    validation_summary: Mapping[str, Any],
    backbone_specs: Mapping[str, Mapping[str, Any]],
    params: Mapping[str, Any],
    runs: Mapping[str, Any],
    engine: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """`prompt_inits`: name -> {path, metadata}; one backbone pass per backbone key.

    Each init is sized by the runs naming it; with `device: run` the tokens come from the
    training engine's device and precision, as the runs will see them.
    """
    if not validation_summary.get("success"):
        raise ValueError(
            "prompt_init refuses data that failed validation (validation_summary.success is "
            "false); fix the data and rerun `kedro run --pipelines data_validation`"
        )
    configs = init_configs(params, runs)
    output_dir = Path(params["output_dir"])
    placement = _placement(str(params.get("device", "run")), engine)
    device = str(placement.device)
    budget = int(float(params["memory_budget_mb"]) * 2**20)
    index: dict[str, dict[str, Any]] = {}
    for key in sorted({backbone for backbone, _ in configs.values()}):
        if key not in backbone_specs:
            raise ValueError(
                f"{WHERE}: backbone '{key}' is not in backbone_specs "
                f"({', '.join(sorted(backbone_specs))}); see parameters_backbone.yml"
            )
        spec = backbone_specs[key]
        model = backbones.from_spec(spec)
        stream = _stream(shards, spec, params, device)
        group = {name: c for name, (b, c) in configs.items() if b == key}
        results = prompt_init.build_prompt_inits(
            model,
            stream,
            group,
            memory_budget_bytes=budget,
            device=device,
            dtype=placement.dtype,
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
            index[name] = {"path": path.as_posix(), "metadata": result.metadata}
    return index
