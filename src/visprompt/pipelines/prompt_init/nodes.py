"""Node of the prompt_init pipeline: one frozen pass per backbone, files per init, MLflow."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow

from visprompt import backbones, methods, prompt_init
from visprompt.pipelines import tracking
from visprompt.pipelines.runs import parse_run
from visprompt.training import Placement, Preprocess

log = logging.getLogger(__name__)

_INIT_KEYS = {"strategy", "seed", "max_tokens"}
#: Stated once, by the VPT run(s) that name the init (`prompt_init: <name>`).
_FROM_RUN = ("backbone", "variant", "num_prompts")
_WHERE = "parameters_prompt_init.yml: prompt_init"


def _run_sizes(runs: Mapping[str, Any]) -> dict[str, dict[str, tuple[str, Any]]]:
    """init name -> {run name: (backbone, variant, num_prompts)} over the runs naming it."""
    defaults = inspect.signature(methods.method_class("vpt")).parameters
    users: dict[str, dict[str, tuple[str, Any]]] = {}
    for run_name, entry in runs.items():
        spec = parse_run(run_name, entry)
        if spec.prompt_init is None:
            continue
        size = tuple(spec.options.get(k, defaults[k].default) for k in _FROM_RUN[1:])
        users.setdefault(spec.prompt_init, {})[run_name] = (spec.backbone, *size)
    return users


def init_configs(
    params: Mapping[str, Any], runs: Mapping[str, Any]
) -> dict[str, tuple[str, prompt_init.InitConfig]]:
    """name -> (backbone key, InitConfig) for every init a training run names.

    The prompt count, variant and backbone come from the VPT run(s) with `prompt_init:
    <name>` in `training.runs`, so the init and the run cannot disagree; runs of different
    sizes sharing one init, or an init stating them itself, are errors naming the fix. An
    init no run names is skipped with a warning (nothing says its size).
    """
    inits = params.get("inits") or {}
    if not inits:
        raise ValueError(f"{_WHERE}.inits is empty; configure at least one initialisation")
    users = _run_sizes(runs)
    unknown_inits = sorted(set(users) - set(inits))
    if unknown_inits:
        names = {n: sorted(users[n]) for n in unknown_inits}
        raise ValueError(f"{_WHERE}.inits lacks {names} (named by training runs): add them")
    kmeans = dict(params.get("kmeans") or {})
    configs = {}
    for name, entry in inits.items():
        stated = sorted(set(entry) & set(_FROM_RUN))
        if stated:
            raise ValueError(
                f"{_WHERE}.inits.{name}: remove {stated}; they come from the VPT run(s) "
                f"with `prompt_init: {name}` in parameters_training.yml"
            )
        unknown = sorted(set(entry) - _INIT_KEYS)
        if unknown:
            raise ValueError(
                f"{_WHERE}.inits.{name}: unknown key(s) {unknown}; allowed {sorted(_INIT_KEYS)}"
            )
        if name not in users:
            log.warning("prompt_init %s skipped: no training run names it", name)
            continue
        sizes = set(users[name].values())
        if len(sizes) > 1:
            raise ValueError(
                f"parameters_training.yml: runs {users[name]} share prompt_init '{name}' with "
                "different (backbone, variant, num_prompts); give each size its own init"
            )
        (backbone, variant, num_prompts), *_ = sizes
        try:
            config = prompt_init.InitConfig(
                strategy=entry.get("strategy", ""),
                num_prompts=int(num_prompts),
                variant=str(variant),
                seed=int(entry.get("seed", params.get("seed", 0))),
                max_tokens=entry.get("max_tokens", params.get("max_tokens")),
                kmeans_max_iter=int(kmeans.get("max_iter", 100)),
                kmeans_tol=float(kmeans.get("tol", 1e-4)),
            )
        except ValueError as exc:
            raise ValueError(f"{_WHERE}.inits.{name}: {exc}") from exc
        configs[name] = (str(backbone), config)
    return configs


def _placement(device: str, engine: Mapping[str, Any] | None) -> Placement:
    """`run`: the training engine's accelerator and precision; else that device, in fp32."""
    if device == "run":
        return Placement.from_engine(engine or {})
    return Placement.on(device)


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
    runs: Mapping[str, Any],
    engine: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """`prompt_inits`: name -> {path, metadata}; one backbone pass per backbone key.

    Each init is sized by the training run(s) naming it (`init_configs`). With
    `prompt_init.device: run` the tokens come from the training engine's device and
    precision (`engine`, e.g. bf16 autocast on the GPU), as the runs will see them.

    Writes `<output_dir>/<name>.safetensors` (prompts (layers, p, D)) and `<name>.json`.
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
            log.info(
                "prompt_init %s: %s %s in %.2f s",
                name,
                result.metadata["strategy"],
                tuple(result.prompts.shape),
                result.metadata["seconds_total"],
            )
            index[name] = {"path": path.as_posix(), "metadata": result.metadata}
    return index
