"""Train one seed of one run: the implementation the training pipeline, tuning trials and the
sweeps share, so they cannot drift apart (the ddp rule, the image-size check, seeding).

No Kedro and no MLflow here: callers pass parsed specs and log what comes back. The summary
carries `run_key`, the one identity of the result: the method config, the train config, the
data's content hash, the backbone weights' sha256, the prompt init and a digest of all code
the run executes (`code_digest`). With a checkpoint root, the seed's checkpoints live in a
folder named by that key, and a seed finished under the same key is returned from its
checkpoint without a forward pass over data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from visprompt import backbones, methods, progress
from visprompt.atomic import atomic_path
from visprompt.data.shards import ShardDataset, read_classes
from visprompt.training import checkpoint
from visprompt.training.code_digest import code_digest
from visprompt.training.config import Preprocess, TrainConfig
from visprompt.training.loop import EpochCallback, fit
from visprompt.training.runs import ConfigError, RunSpec

#: Written next to the checkpoint once `fit` returns: the seed is finished under its key.
RESULT_FILE = "result.json"


def image_size(spec: RunSpec, backbone_spec: Mapping[str, Any]) -> int:
    """The built backbone's input side; the configuration must state the same one."""
    size = int(backbone_spec["data_config"]["input_size"][-1])
    if spec.options.get("image_size", size) != size:
        raise ValueError(
            f"run '{spec.name}': options.image_size {spec.options['image_size']} differs from "
            f"backbone '{spec.backbone}' ({size} px, backbone_specs): drop the option, the "
            "method takes the size from the backbone"
        )
    if spec.image_size not in (None, size):
        raise ConfigError(
            f"run '{spec.name}': parameters_backbone.yml states {spec.image_size} px for "
            f"backbone '{spec.backbone}', but backbone_specs (data/06_models/backbones) was "
            f"built at {size} px. Rebuild it first with the same --params: `kedro run "
            f"--pipelines backbone --params ...` (or run the whole pipeline)"
        )
    return size


def run_params(
    spec: RunSpec,
    config: TrainConfig,
    backbone_spec: Mapping[str, Any],
    data_hash: str | None,
    init: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything that decides the seed's numbers (what `run_key` hashes; logged as params)."""
    prompts = init.get("init_prompts")
    return {
        "method": spec.method,
        "backbone": spec.backbone,
        "prompt_init": spec.prompt_init,
        "seed": config.seed,
        "options": dict(spec.options),
        "train": config.result_fields(),
        "backbone_sha256": backbone_spec["sha256"],
        "preprocess": backbone_spec["data_config"],  # input size, mean/std, interpolation
        "data_hash": data_hash,
        "prompt_init_sha256": None
        if prompts is None
        else backbones.tensors_sha256([("init_prompts", prompts)]),
        "code_sha256": code_digest(),
    }


def train_seed(
    spec: RunSpec,
    config: TrainConfig,
    backbone_spec: Mapping[str, Any],
    shards: str,
    data_hash: str | None,
    *,
    init: Mapping[str, Any] | None = None,
    checkpoint_root: str | None = None,
    datasets: tuple[Dataset, Dataset] | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> tuple[methods.AdaptedModel, dict[str, Any], list[dict[str, float]]]:
    """Train seed `config.seed` of `spec` on the shards' train split, select on val.

    Returns (model at its best epoch, summary, history). `datasets` (train, val) lets
    tuning trials share one pair; by default they are read from `shards`. `init` holds the
    method's built initial tensors (an SPT run's `init_prompts`), hashed into the key.
    """
    size = image_size(spec, backbone_spec)
    if config.strategy == "ddp":  # "ddp" would re-execute the whole command once per rank
        config = dataclasses.replace(config, strategy="ddp_spawn")  # the workers train this run
    init = dict(init or {})
    params = run_params(spec, config, backbone_spec, data_hash, init)
    key = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    folder = None
    if checkpoint_root is not None:
        folder = Path(checkpoint_root) / f"{spec.name}.seed_{config.seed}-{key[:16]}"
        config = dataclasses.replace(config, checkpoint_dir=str(folder))
    torch.manual_seed(config.seed)  # the new head's initial weights belong to the seed
    classes = read_classes(shards)
    model = methods.build(
        spec.method, backbones.from_spec(backbone_spec), len(classes), **spec.options, **init
    )
    finished = _finished(folder, model)
    if finished is not None:
        progress.mark_reused()  # the console says "reused"; the job's ETA leaves it out
        return model, *finished
    train_set, val_set = datasets or (ShardDataset(shards, "train"), ShardDataset(shards, "val"))
    preprocess = Preprocess.from_data_config(backbone_spec["data_config"])
    result = fit(model, train_set, val_set, preprocess, config, on_epoch_end)
    counts = methods.count_parameters(model)
    summary = {
        "run": spec.name,
        "seed": config.seed,
        "method": spec.method,
        "backbone": spec.backbone,
        "image_size": size,
        "trainable_params": counts["trainable"],
        "total_params": counts["total"],
        "train_time_s": result.train_time_s,
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_top1": result.best_val_top1,
        "val_top1": result.history[result.best_epoch]["val_top1"],
        # later work on this run (evaluation) runs where and how it trained
        "accelerator": config.accelerator,
        "precision": config.precision,
        "run_key": key,
        "params": params,
    }
    if folder is not None:
        with atomic_path(folder / RESULT_FILE) as tmp:
            tmp.write_text(json.dumps({"summary": summary, "history": result.history}))
    return model, summary, result.history


def _finished(
    folder: Path | None, model: methods.AdaptedModel
) -> tuple[dict[str, Any], list[dict[str, float]]] | None:
    """(summary, history) of a seed finished in `folder`, its best state loaded into `model`."""
    if folder is None or not (folder / RESULT_FILE).is_file():
        return None
    stored = json.loads((folder / RESULT_FILE).read_text())
    best_state, best_extra = checkpoint.load_best(folder)
    model.load_prompt_state_dict(best_state)
    model.load_extra_state(best_extra)
    return stored["summary"], stored["history"]
