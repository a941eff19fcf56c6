"""Equal-budget Optuna studies that several processes (or machines) can share.

The storage numbers trials atomically, so processes asking for trials until a study holds
`budget` split it without running a trial twice; one that lost the race for the last slot
marks its extra trial FAIL (`over_budget`), and reports count only trials below the budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

EpochCallback = Callable[[int, dict[str, float]], None]
_PRUNERS = {"median": optuna.pruners.MedianPruner, "none": optuna.pruners.NopPruner}


def open_study(
    storage: str, name: str, *, seed: int, pruner: Mapping[str, Any] | None = None
) -> optuna.Study:
    """Create the study `name` in `storage`, or join it when another process already did.

    `pruner`: `{type: median, ...MedianPruner options}` or `{type: none}`. Give each process
    its own `seed` (`tuning.worker`) so parallel workers do not draw the same values.
    """
    options = dict(pruner or {"type": "median"})
    kind = options.pop("type", "median")
    if kind not in _PRUNERS:
        raise ValueError(f"tuning.pruner.type is '{kind}'; valid: {', '.join(_PRUNERS)}")
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=_PRUNERS[kind](**options),
        load_if_exists=True,
    )


def run_trials(
    study: optuna.Study, budget: int, objective: Callable[[optuna.Trial], float]
) -> list[int]:
    """Run trials until the study holds `budget`; the numbers this process ran (an error
    other than `optuna.TrialPruned` marks the trial FAIL and propagates)."""
    if budget < 1:
        raise ValueError(f"tuning.trials must be >= 1, got {budget}")
    ran: list[int] = []
    while len(study.get_trials(deepcopy=False)) < budget:
        trial = study.ask()
        if trial.number >= budget:  # another process took the last slot meanwhile
            trial.set_user_attr("over_budget", True)
            study.tell(trial, state=TrialState.FAIL)
            break
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            study.tell(trial, value)
        ran.append(trial.number)
    return ran


def pruning_callback(trial: optuna.Trial, metric: str = "val_top1") -> EpochCallback:
    """An epoch callback for `fit`: report `metric`, stop the trial when the pruner says so."""

    def on_epoch_end(epoch: int, row: dict[str, float]) -> None:
        trial.report(float(row[metric]), epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: {metric} {row[metric]:.4f}")

    return on_epoch_end


def budget_trials(study: optuna.Study, budget: int) -> list[FrozenTrial]:
    """The study's trials within the budget (numbers 0..budget-1), in order."""
    return sorted(
        (t for t in study.get_trials(deepcopy=False) if t.number < budget),
        key=lambda t: t.number,
    )


def trial_value(trial: FrozenTrial) -> float:
    """The trial's objective; a pruned trial's best reported value; NaN when none."""
    if trial.value is not None:
        return float(trial.value)
    reported = list(trial.intermediate_values.values())
    return float(max(reported)) if reported else math.nan


def best_trial(study: optuna.Study, budget: int) -> FrozenTrial:
    """The complete trial with the highest value within the budget."""
    complete = [t for t in budget_trials(study, budget) if t.state == TrialState.COMPLETE]
    if not complete:
        raise ValueError(
            f"study '{study.study_name}' has no complete trial within its budget of {budget} "
            "(all pruned or failed): raise tuning.trials or loosen tuning.pruner"
        )
    return max(complete, key=lambda t: (t.value, -t.number))
