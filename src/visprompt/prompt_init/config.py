"""The SPT initialisations of `parameters_prompt_init.yml`, checked against the VPT runs.

An init's prompt count, variant and backbone are stated once, by the VPT run(s) of
`training.runs` that name it (`prompt_init: <name>`); this turns the `prompt_init.inits`
section plus the run list into one `InitConfig` per init, or an error naming the field.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from visprompt.methods.vpt.config import VPTConfig
from visprompt.prompt_init.collect import InitConfig
from visprompt.training.runs import parse_run

log = logging.getLogger(__name__)

_INIT_KEYS = {"strategy", "seed", "max_tokens"}
#: Stated once, by the VPT run(s) that name the init (`prompt_init: <name>`).
_FROM_RUN = ("backbone", "variant", "num_prompts")
#: Where the inits live, for error messages.
WHERE = "parameters_prompt_init.yml: prompt_init"


def _run_sizes(runs: Mapping[str, Any]) -> dict[str, dict[str, tuple[str, Any]]]:
    """init name -> {run name: (backbone, variant, num_prompts)} over the runs naming it."""
    defaults = VPTConfig()
    users: dict[str, dict[str, tuple[str, Any]]] = {}
    for run_name, entry in runs.items():
        spec = parse_run(run_name, entry)
        if spec.prompt_init is None:
            continue
        size = tuple(spec.options.get(k, getattr(defaults, k)) for k in _FROM_RUN[1:])
        users.setdefault(spec.prompt_init, {})[run_name] = (spec.backbone, *size)
    return users


def init_configs(
    params: Mapping[str, Any], runs: Mapping[str, Any]
) -> dict[str, tuple[str, InitConfig]]:
    """name -> (backbone key, InitConfig) for every init a training run names.

    The prompt count, variant and backbone come from the VPT run(s) with `prompt_init:
    <name>` in `training.runs`, so the init and the run cannot disagree; runs of different
    sizes sharing one init, or an init stating them itself, are errors naming the fix. An
    init no run names is skipped with a warning (nothing says its size).
    """
    inits = params.get("inits") or {}
    if not inits:
        raise ValueError(f"{WHERE}.inits is empty; configure at least one initialisation")
    users = _run_sizes(runs)
    unknown_inits = sorted(set(users) - set(inits))
    if unknown_inits:
        names = {n: sorted(users[n]) for n in unknown_inits}
        raise ValueError(f"{WHERE}.inits lacks {names} (named by training runs): add them")
    kmeans = dict(params.get("kmeans") or {})
    configs = {}
    for name, entry in inits.items():
        stated = sorted(set(entry) & set(_FROM_RUN))
        if stated:
            raise ValueError(
                f"{WHERE}.inits.{name}: remove {stated}; they come from the VPT run(s) "
                f"with `prompt_init: {name}` in parameters_training.yml"
            )
        unknown = sorted(set(entry) - _INIT_KEYS)
        if unknown:
            raise ValueError(
                f"{WHERE}.inits.{name}: unknown key(s) {unknown}; allowed {sorted(_INIT_KEYS)}"
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
            config = InitConfig(
                strategy=entry.get("strategy", ""),
                num_prompts=int(num_prompts),
                variant=str(variant),
                seed=int(entry.get("seed", params.get("seed", 0))),
                max_tokens=entry.get("max_tokens", params.get("max_tokens")),
                kmeans_max_iter=int(kmeans.get("max_iter", 100)),
                kmeans_tol=float(kmeans.get("tol", 1e-4)),
            )
        except ValueError as exc:
            raise ValueError(f"{WHERE}.inits.{name}: {exc}") from exc
        configs[name] = (str(backbone), config)
    return configs
