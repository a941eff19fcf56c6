"""Node of the training pipeline: train one configured run and report what it cost."""

from __future__ import annotations

import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import mlflow
import torch

from visprompt import backbones, methods
from visprompt.data.shards import ShardDataset, read_classes, require_validated
from visprompt.pipelines import tracking
from visprompt.pipelines.runs import parse_run, seed_namespace, train_config
from visprompt.pipelines.tracking import KEY_TAG
from visprompt.prompt_init.io import load_prompts
from visprompt.training import Preprocess, fit
from visprompt.training.code_digest import source_digest
from visprompt.tuning.space import apply as apply_changes
from visprompt.tuning.space import chosen_hparams
from visprompt.weights import fingerprint


def init_prompts(name: str | None, prompt_inits: dict[str, Any] | None) -> dict[str, Any]:
    """`{"init_prompts": tensor}` for an SPT run's named init, `{}` without one."""
    if name is None:
        return {}
    if not prompt_inits or name not in prompt_inits:
        raise ValueError(
            f"prompt_init '{name}' not found in prompt_inits "
            f"({sorted(prompt_inits or {})}); add it to parameters_prompt_init.yml"
        )
    return {"init_prompts": load_prompts(prompt_inits[name]["path"])}


def train_run(
    run_name: str,
    seed: int,
    run: dict[str, Any],
    defaults: dict[str, Any],
    engine: dict[str, Any],
    checkpoint_root: str,
    shards: str,
    validation_summary: dict[str, Any],
    backbone_specs: dict[str, dict[str, Any]],
    prompt_inits: dict[str, Any] | None = None,
    hparams: str = "config",
    tuned_hparams: dict[str, Any] | None = None,
) -> tuple[methods.AdaptedModel, dict[str, Any], list[dict[str, float]]]:
    """Train `run` with `seed` on the shards' train split, select on val; (model, summary, history).

    The seed fixes the head's initial weights, data order and augmentation. A nested MLflow
    run named `<run>.seed_<seed>` records its parameters, per-epoch metrics,
    parameter counts and the saved artifact. Checkpoints go to a folder named by every input
    that changes the result, so a killed run resumes and a finished one returns at once.
    With `hparams="tuned"` the run's best values from the tuning pipeline (`tuned_hparams`)
    replace its configured ones; the summary's `hparams_source` says which were used.
    """
    require_validated(shards, validation_summary)  # the summary must describe these shards
    changes, hparams_source = chosen_hparams(run_name, hparams, tuned_hparams)
    spec = apply_changes(parse_run(run_name, run), changes)
    if spec.backbone not in backbone_specs:
        raise ValueError(
            f"run '{run_name}': backbone '{spec.backbone}' is not in backbone_specs "
            f"({sorted(backbone_specs)}); run `kedro run --pipelines backbone`"
        )
    bb_spec = backbone_specs[spec.backbone]
    size = int(bb_spec["data_config"]["input_size"][-1])
    if spec.options.get("image_size", size) != size:
        raise ValueError(
            f"run '{run_name}': options.image_size {spec.options['image_size']} differs from "
            f"backbone '{spec.backbone}' ({size} px, backbone_specs): drop the option, the "
            "method takes the size from the backbone"
        )
    init = init_prompts(spec.prompt_init, prompt_inits)
    if "seed" in defaults:
        raise ValueError(
            "parameters_training.yml: training.defaults.seed is replaced by training.seeds "
            "(a list, e.g. [0, 1, 2]); move it there"
        )
    config = train_config(defaults, spec.train | {"seed": int(seed)}, engine, run=run_name)
    if config.strategy == "ddp":  # "ddp" would re-execute the whole `kedro run` once per rank
        config.strategy = "ddp_spawn"  # the workers train this one run; the pipeline runs once
    code = source_digest()  # edited method/loop/backbone code must not reuse a checkpoint
    # the seed list is not part of one seed's result: adding a seed keeps the others' checkpoints
    result_inputs = {k: v for k, v in run.items() if k != "seeds"}
    data_hash = validation_summary.get("data_hash")
    key = fingerprint(
        result_inputs, changes, config.result_fields(), bb_spec["sha256"], data_hash, code
    )
    name = seed_namespace(run_name, seed)
    config.checkpoint_dir = str(Path(checkpoint_root) / f"{name}-{key[:16]}")
    classes = read_classes(shards)
    torch.manual_seed(config.seed)  # the new head's initial weights belong to the run
    model = methods.build(
        spec.method, backbones.from_spec(bb_spec), len(classes), **spec.options, **init
    )
    counts = methods.count_parameters(model)
    tags = {"visprompt.stage": "training", "visprompt.run": run_name, "visprompt.seed": str(seed)}
    # The MLflow run of this seed is named by its checkpoint key like the checkpoint folder:
    # a later `kedro run` with the same inputs reuses it instead of logging a copy. It is
    # logged directly, not through catalog datasets: its id exists only once the node runs
    # (one nested run per seed) and the epochs are logged live, as they finish.
    reused = tracking.finished_run(key)
    opened = nullcontext() if reused else tracking.nested_run(name, tags=tags | {KEY_TAG: key})
    with opened as mlrun:
        if not reused:
            tracking.log_params(
                {
                    "method": spec.method,
                    "backbone": spec.backbone,
                    "prompt_init": spec.prompt_init,
                    "seed": seed,
                    "hparams_source": hparams_source,
                }
            )
            tracking.log_params(spec.options, "options.")
            tracking.log_params(config.to_dict(), "train.")
            tracking.log_params({"backbone_sha256": bb_spec["sha256"], "code_sha256": code})
        logged: set[int] = set()

        def on_epoch_end(epoch: int, row: dict[str, float]) -> None:
            tracking.log_epoch(epoch, row)
            logged.add(epoch)

        result = fit(
            model,
            ShardDataset(shards, "train"),
            ShardDataset(shards, "val"),
            Preprocess.from_data_config(bb_spec["data_config"]),
            config,
            on_epoch_end=None if reused else on_epoch_end,
        )
        summary = {
            "run": run_name,
            "seed": int(seed),
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
            "mlflow_run_id": reused or mlrun.info.run_id,
            # later work on this run (evaluation) runs where and how it trained
            "accelerator": config.accelerator,
            "precision": config.precision,
            "hparams_source": hparams_source,
        }
        if not reused:
            # a run resumed from a finished checkpoint trains no epoch here: log its history
            tracking.log_history([row for row in result.history if row["epoch"] not in logged])
            tracking.log_numbers(summary)
            with tempfile.TemporaryDirectory() as tmp:
                mlflow.log_artifacts(str(methods.save(model, Path(tmp) / run_name)), "artifact")
    return model, summary, result.history
