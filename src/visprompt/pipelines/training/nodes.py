"""Node of the training pipeline: one seed of one run through the run service (its MLflow run
is the hook's, `hooks.DataTrackingHook`; its artifact is written by the catalog)."""

from __future__ import annotations

from typing import Any

from visprompt import methods
from visprompt.data.shards import require_validated
from visprompt.prompt_init.io import load_prompts
from visprompt.training.runs import RunSpec, train_config
from visprompt.training.service import train_seed
from visprompt.tuning.space import apply as apply_changes
from visprompt.tuning.space import chosen_hparams


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
    spec: RunSpec,
    seed: int,
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
    """Train seed `seed` of the validated run `spec`; (model, summary, history).

    With `hparams="tuned"` the tuning pipeline's best values (`tuned_hparams`) replace the
    configured ones; `hparams_source` says which.
    """
    require_validated(shards, validation_summary)  # the summary must describe these shards
    changes, hparams_source = chosen_hparams(spec.name, hparams, tuned_hparams)
    spec = apply_changes(spec, changes)
    if spec.backbone not in backbone_specs:
        raise ValueError(
            f"run '{spec.name}': backbone '{spec.backbone}' is not in backbone_specs "
            f"({sorted(backbone_specs)}); run `kedro run --pipelines backbone`"
        )
    config = train_config(defaults, spec.train | {"seed": int(seed)}, engine, run=spec.name)
    model, summary, history = train_seed(
        spec,
        config,
        backbone_specs[spec.backbone],
        shards,
        validation_summary.get("data_hash"),
        init=init_prompts(spec.prompt_init, prompt_inits),
        checkpoint_root=checkpoint_root,
    )
    return model, summary | {"hparams_source": hparams_source}, history
