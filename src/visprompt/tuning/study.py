"""Equal-budget Optuna studies that several processes (or machines) can share and that
survive killed processes.

The budget counts finished (COMPLETE or PRUNED) trials. Every trial reports a heartbeat
(Optuna's RDB storage heartbeat); a trial whose process died is marked FAIL by the next
process that looks at the study and retried with the same values
(`RetryHeartbeatStaleTrialCallback`), so a killed trial neither counts toward the budget nor
stays RUNNING for ever. The sampler is seeded per budget slot from (seed, slot): a resumed
search draws what an uninterrupted one would have drawn for that slot instead of replaying
its first trials (a TPE sampler re-created with one fixed seed starts its sequence again).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages._heartbeat import get_heartbeat_thread
from optuna.trial import FrozenTrial, TrialState

from visprompt.data.sizes import ConfigError

EpochCallback = Callable[[int, dict[str, float]], None]
_PRUNERS = {"median": optuna.pruners.MedianPruner, "none": optuna.pruners.NopPruner}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: States that hold a budget slot: finished, running (or dead but not yet found stale) and
#: enqueued retries.
_TAKEN = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
_OVER_BUDGET = "over_budget"
_ERROR = "error"  # the objective raised (the run stopped with it): not a killed trial


class StorageError(ConfigError):
    """The Optuna storage is corrupt, locked or unreachable; the message says which and the fix."""


def open_study(
    storage: str,
    name: str,
    *,
    pruner: Mapping[str, Any] | None = None,
    heartbeat_s: int = 5,
    grace_s: int = 20,
    retries: int = 2,
    lock_wait_s: float = 30.0,
) -> optuna.Study:
    """Create the study `name` in `storage`, or join it when another process already did.

    `pruner`: `{type: median, ...MedianPruner options}` or `{type: none}`. A trial without a
    heartbeat for `grace_s` seconds is failed and retried up to `retries` times. A SQLite
    file is created under a file lock (workers starting together on a new file wait for the
    first), and a write lock held by another process is waited for up to `lock_wait_s`.
    """
    options = dict(pruner or {"type": "median"})
    kind = options.pop("type", "median")
    if kind not in _PRUNERS:
        raise ValueError(f"tuning.pruner.type is '{kind}'; valid: {', '.join(_PRUNERS)}")
    with _quiet():
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retries)
    sqlite_file = _sqlite_file(storage)
    memory = storage.endswith(":memory:")
    heartbeat = {
        "heartbeat_interval": heartbeat_s,
        "grace_period": grace_s,
        "heartbeat_stale_trial_callback": retry,
    }
    engine = {"connect_args": {"timeout": lock_wait_s}} if sqlite_file else {}
    with storage_errors(storage, lock_wait_s), _creation_lock(sqlite_file), _quiet():
        if sqlite_file is not None and not sqlite_file.exists():
            _create_whole(sqlite_file)
        for attempt in range(3):  # another server-database client may create the tables too
            try:
                rdb = optuna.storages.RDBStorage(
                    storage,
                    engine_kwargs=engine,
                    # a memory database dies with its process: nothing to detect (and the
                    # heartbeat thread's own connection would see another, empty database)
                    **({} if memory else heartbeat),
                )
                break
            except sqlalchemy.exc.IntegrityError:
                if attempt == 2:
                    raise
                time.sleep(1.0)
        return optuna.create_study(
            storage=rdb,
            study_name=name,
            direction="maximize",
            sampler=slot_sampler(0, 0),
            pruner=_PRUNERS[kind](**options),
            load_if_exists=True,
        )


def _create_whole(path: Path) -> None:
    """Create a new SQLite storage in a temporary file and rename it into place: a process
    killed during the schema's creation leaves no half-made storage (under the creation lock)."""
    tmp = path.with_name(f".{path.name}.init.tmp")
    tmp.unlink(missing_ok=True)  # what a killed creation left
    optuna.storages.RDBStorage(f"sqlite:///{tmp}").engine.dispose()
    os.replace(tmp, path)


def _sqlite_file(url: str) -> Path | None:
    """The file of a `sqlite:///path` URL (None for a server database or `:memory:`)."""
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return None
    return Path(url.removeprefix("sqlite:///"))


@contextlib.contextmanager
def _creation_lock(path: Path | None) -> Iterator[None]:
    """Hold an exclusive lock on `<db>.lock` while the storage's tables are created: several
    workers starting on a new file would otherwise race to create them (alembic's
    `UNIQUE constraint failed: alembic_version.version_num`)."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def storage_errors(url: str, lock_wait_s: float) -> Iterator[None]:
    """Turn a corrupt, locked or unreachable storage into one paragraph naming the URL,
    `tuning.storage` and the fix (a bare SQLAlchemy traceback names neither)."""
    try:
        yield
    except (
        sqlalchemy.exc.SQLAlchemyError,
        optuna.exceptions.StorageInternalError,
        OSError,  # the SQLite file's folder cannot be created
        ImportError,  # the URL's database driver is not installed
    ) as error:
        cause = error
        while not isinstance(cause, sqlalchemy.exc.SQLAlchemyError) and cause.__cause__:
            cause = cause.__cause__
        text = (str(getattr(cause, "orig", None) or cause).splitlines() or [repr(cause)])[0]
        where = f"the Optuna storage {url} (tuning.storage in parameters_tuning.yml)"
        if "not a database" in text or "malformed" in text:
            problem, fix = (
                "is not a readable SQLite database (corrupt, truncated or another kind of file)",
                "move the file away (the search starts again; its trials are lost) or set "
                "tuning.storage to another file, e.g. --params tuning.storage=sqlite:///"
                "data/06_models/tuning/optuna2.db",
            )
        elif isinstance(cause, ImportError):
            problem, fix = (
                "needs a database driver that is not installed",
                "name the installed PostgreSQL driver in the URL (postgresql+psycopg2://...) "
                "or install the driver the URL names",
            )
        elif "locked" in text:
            problem, fix = (
                f"stayed locked by another process for {lock_wait_s:.0f} s",
                "wait for the other tuning process to finish (or stop it) and rerun; workers "
                "that run at the same time should share a server database "
                "(postgresql://...) rather than one SQLite file",
            )
        else:
            problem, fix = (
                "could not be opened or reached",
                "check the URL, the path's folder permissions, or that the database server "
                "runs and accepts the credentials; or use a local file (sqlite:///...)",
            )
        raise StorageError(f"{where} {problem} ({text}): {fix}.") from None


def slot_sampler(seed: int, slot: int, given_up: int = 0) -> optuna.samplers.TPESampler:
    """The TPE sampler for budget slot `slot`: seeded from (seed, slot), so the values of a
    slot do not depend on how many processes (or restarts) the search took. `given_up`
    killed trials whose retries ran out change the seed: their slot draws other values."""
    key = f"{seed}:{slot}" + (f":{given_up}" if given_up else "")
    digest = hashlib.sha256(key.encode()).digest()
    return optuna.samplers.TPESampler(seed=int.from_bytes(digest[:4], "big"))


def run_trials(
    study: optuna.Study,
    budget: int,
    objective: Callable[[optuna.Trial], float],
    *,
    seed: int = 0,
    poll_s: float = 1.0,
) -> list[int]:
    """Run trials until the study holds `budget` finished ones; the numbers this process ran.

    Trials of other processes (or of a dead one, until its heartbeat is stale) that fill the
    last slots are waited for. An error other than `optuna.TrialPruned` marks the trial FAIL
    and propagates.
    """
    if budget < 1:
        raise ValueError(f"tuning.trials must be >= 1, got {budget}")
    ran: list[int] = []
    while True:
        trials = _fail_stale(study)
        if sum(t.state in FINISHED for t in trials) >= budget:
            return ran
        taken = sum(t.state in _TAKEN for t in trials)
        retry = any(t.state == TrialState.WAITING for t in trials)
        if taken >= budget and not retry:  # the last slots run elsewhere (or died there)
            time.sleep(poll_s)
            continue
        study.sampler = slot_sampler(seed, taken, _given_up(trials))
        with _quiet():
            trial = study.ask()
        if _slot(study, trial.number) >= budget:  # another process took the slot meanwhile
            trial.set_user_attr(_OVER_BUDGET, True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        with get_heartbeat_thread(trial._trial_id, study._storage):
            try:
                value = objective(trial)
            except optuna.TrialPruned:
                state, value = TrialState.PRUNED, None
            except BaseException:
                trial.set_user_attr(_ERROR, True)
                study.tell(trial, state=TrialState.FAIL)
                raise
            else:
                state = TrialState.COMPLETE
        study.tell(trial, value, state=state)
        ran.append(trial.number)


def _fail_stale(study: optuna.Study) -> list[FrozenTrial]:
    """Fail (and enqueue the retry of) trials whose heartbeat stopped; the study's trials."""
    with _quiet():
        optuna.storages.fail_stale_trials(study)
    return study.get_trials(deepcopy=False)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Without Optuna's notes that the heartbeat API is experimental and meant for
    `Study.optimize` (this module runs its heartbeat thread around `ask`/`tell` itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
        yield


def _given_up(trials: list[FrozenTrial]) -> int:
    """Killed trials (stale heartbeat) that no retry follows: `retries` ran out for them."""
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(
        t.state == TrialState.FAIL
        and not t.user_attrs.get(_OVER_BUDGET)
        and not t.user_attrs.get(_ERROR)
        and t.number not in retried
        for t in trials
    )


def _slot(study: optuna.Study, number: int) -> int:
    """Budget slots held by trials numbered below `number`."""
    return sum(t.number < number and t.state in _TAKEN for t in study.get_trials(deepcopy=False))


def pruning_callback(trial: optuna.Trial, metric: str = "val_top1") -> EpochCallback:
    """An epoch callback for `fit`: report `metric`, stop the trial when the pruner says so."""

    def on_epoch_end(epoch: int, row: dict[str, float]) -> None:
        trial.report(float(row[metric]), epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: {metric} {row[metric]:.4f}")

    return on_epoch_end


def budget_trials(study: optuna.Study, budget: int) -> list[FrozenTrial]:
    """The study's first `budget` finished trials, in order (failed ones do not count)."""
    finished = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED]
    return sorted(finished, key=lambda t: t.number)[:budget]


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
