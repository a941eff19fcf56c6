"""Node of the tuning pipeline: an Optuna study per run, every trial a nested MLflow run."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
from typing import Any

import optuna
import pandas as pd
from torch.utils.data import Dataset

from visprompt.data.shards import ShardDataset, require_validated
from visprompt.pipelines import tracking
from visprompt.pipelines.training.nodes import init_prompts
from visprompt.training.runs import RunSpec, train_config
from visprompt.training.service import run_params, train_seed
from visprompt.tuning import space as spaces
from visprompt.tuning import study as studies

log = logging.getLogger(__name__)

COLUMNS = ["run", "trial", "val_top1", "state"]
#: `tuning.*` keys passed to `open_study`: heartbeat, retries of killed trials, lock wait.
_SURVIVAL = ("heartbeat_s", "grace_s", "retries", "lock_wait_s")


@dataclasses.dataclass(frozen=True)
class _Trials:
    """What every trial of one run shares."""

    spec: RunSpec
    space: dict[str, spaces.Dimension]
    study: str
    defaults: dict[str, Any]
    engine: dict[str, Any]
    epochs: int | None
    backbone: dict[str, Any]
    init: dict[str, Any]
    shards: str
    data_hash: str | None
    datasets: tuple[Dataset, Dataset]


def study_name(prefix: str, spec: RunSpec, space: dict[str, Any], inputs: list[Any]) -> str:
    """`<prefix>.<run>.<digest>`: a changed space, config, code or data opens a new study."""
    text = json.dumps(
        [dataclasses.asdict(spec), {k: dataclasses.asdict(v) for k, v in space.items()}, inputs],
        sort_keys=True,
        default=str,
    )
    return f"{prefix}.{spec.name}.{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _objective(ctx: _Trials, trial: optuna.Trial) -> float:
    """Train one trial's values on train (the run service), return its best val top-1."""
    spec = ctx.spec
    values = spaces.suggest(trial, ctx.space)
    trial_spec = spaces.apply(spec, spaces.overrides(ctx.space, values))
    extra = {"seed": spec.seeds[0], "progress": False}
    config = train_config(ctx.defaults, trial_spec.train | extra, ctx.engine, spec.name)
    if ctx.epochs:  # a shorter schedule for every trial
        warmup = min(config.warmup_epochs, ctx.epochs)
        config = dataclasses.replace(config, epochs=ctx.epochs, warmup_epochs=warmup)
    tags = {
        "visprompt.stage": "tuning",
        "visprompt.run": spec.name,
        "optuna.study": ctx.study,
        "optuna.trial": str(trial.number),
    }
    with tracking.nested_run(f"{spec.name}.trial_{trial.number}", tags=tags):
        tracking.log_params(values)
        prune = studies.pruning_callback(trial)

        def on_epoch_end(epoch: int, row: dict[str, float]) -> None:
            tracking.log_epoch(epoch, row)
            prune(epoch, row)

        try:
            _, summary, _ = train_seed(
                trial_spec,
                config,
                ctx.backbone,
                ctx.shards,
                ctx.data_hash,
                init=ctx.init,
                datasets=ctx.datasets,
                on_epoch_end=on_epoch_end,
            )
        except optuna.TrialPruned:
            tracking.set_tags({"optuna.state": "PRUNED"})
            raise
        tracking.set_tags({"optuna.state": "COMPLETE"})
        tracking.log_numbers({"objective_val_top1": summary["best_val_top1"]})
    return summary["best_val_top1"]


def tune_runs(
    runs: dict[str, RunSpec],
    shards: str,
    validation_summary: dict[str, Any],
    backbone_specs: dict[str, dict[str, Any]],
    defaults: dict[str, Any],
    engine: dict[str, Any],
    search: dict[str, Any],
    prompt_inits: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Search each selected run's space for `search.trials` trials (on its first seed) on the
    validation split; (the trial table, the best values per run for `training.hparams:
    tuned`). A rerun with the same inputs only reports.
    """
    require_validated(shards, validation_summary)
    _require_configured(search, runs)
    selected = search.get("runs")
    datasets = (ShardDataset(shards, "train"), ShardDataset(shards, "val"))
    data_hash = validation_summary.get("data_hash")
    rows: list[dict[str, Any]] = []
    best: dict[str, Any] = {}
    for name, spec in runs.items():
        if selected is not None and name not in selected:
            continue
        space = spaces.run_space(
            spec,
            search["spaces"],
            (selected or {}).get(name),
            (search.get("run_spaces") or {}).get(name),
        )
        bb_spec = backbone_specs[spec.backbone]
        init = init_prompts(spec.prompt_init, prompt_inits)
        # the study belongs to the run's identity (its first seed, configured values)
        base = train_config(defaults, spec.train | {"seed": spec.seeds[0]}, engine, spec.name)
        inputs = [run_params(spec, base, bb_spec, data_hash, init), engine, search.get("epochs")]
        ctx = _Trials(
            spec=spec,
            space=space,
            study=study_name(search.get("study_prefix", "visprompt"), spec, space, inputs),
            defaults=dict(defaults or {}),
            engine=dict(engine),
            epochs=search.get("epochs"),
            backbone=bb_spec,
            init=init,
            shards=shards,
            data_hash=data_hash,
            datasets=datasets,
        )
        run_rows, best[name] = _tune(ctx, search)
        rows += run_rows
    if not best:
        raise ValueError("parameters_tuning.yml: tuning.runs selects no run; nothing to tune")
    params = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in COLUMNS]
    return pd.DataFrame(rows, columns=["run", "trial", *params, "val_top1", "state"]), best


def _require_configured(search: dict[str, Any], runs: dict[str, RunSpec]) -> None:
    """A stale or misspelt run name in `tuning.runs`/`tuning.run_spaces` is no silent no-op."""
    for field in ("runs", "run_spaces"):
        unknown = sorted(set(search.get(field) or {}) - set(runs))
        if unknown:
            raise ValueError(
                f"parameters_tuning.yml: tuning.{field} names {unknown}, not configured runs "
                f"({', '.join(runs)}); rename or remove them"
            )


def _tune(ctx: _Trials, search: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the study's missing trials; (its trial rows, its best values)."""
    budget = int(search["trials"])
    study = studies.open_study(
        str(search["storage"]),
        ctx.study,
        pruner=search.get("pruner"),
        **{key: search[key] for key in _SURVIVAL if key in search},
    )
    seed = int(search.get("seed", 0)) + int(search.get("worker", 0))
    ran = studies.run_trials(study, budget, functools.partial(_objective, ctx), seed=seed)
    trials = studies.budget_trials(study, budget)
    rows = [
        {
            "run": ctx.spec.name,
            "trial": t.number,
            **t.params,
            "val_top1": studies.trial_value(t),
            "state": t.state.name,
        }
        for t in trials
    ]
    top = studies.best_trial(study, budget)
    log.info(
        "tuning %s: %d trials here, %d in the study; best val top1 %.3f (trial %d): %s",
        ctx.spec.name,
        len(ran),
        len(trials),
        top.value,
        top.number,
        top.params,
    )
    best = spaces.overrides(ctx.space, top.params)
    return rows, best | {"val_top1": top.value, "trial": top.number, "study": ctx.study}
