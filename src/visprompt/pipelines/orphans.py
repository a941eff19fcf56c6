"""MLflow after a killed `kedro run`: a new SQLite store appears whole, and the runs a killed
run left RUNNING are closed as KILLED by the next one.

MLflow creates a new SQLite store with a chain of schema migrations; a run killed in the
middle left a half-migrated file that every later run failed on (`no such index`). The store
is now created in a temporary file beside it and renamed into place, under a lock.

SIGKILL (or a power cut) runs no handler, so the run's MLflow runs would stay RUNNING for ever
(Ctrl-C is handled in `kedro_run`). Each `kedro run` tags its top-level MLflow run with its
owner: host, process id and the process's start time (a reused pid is another process). A
RUNNING run whose top-level run belongs to a process of this host that no longer exists is
an orphan. Runs of other hosts, or without the tag, are left alone.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from pathlib import Path
from typing import Any

import mlflow
import sqlalchemy
from kedro.config import MissingConfigException
from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from mlflow.store.db.utils import _initialize_tables
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

OWNER_TAG = "visprompt.owner"
_PARENT_TAG = "mlflow.parentRunId"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def owner(pid: int | None = None) -> str:
    """`host:pid:start`: this process (or `pid`) as the owner of a top-level run."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def is_dead(tag: str) -> bool:
    """True when `tag` names a process of this host that has exited."""
    host, pid, start = tag.rsplit(":", 2)
    return host == socket.gethostname() and _start_time(int(pid)) != start


def close_orphans(client: MlflowClient) -> list[str]:
    """Close as KILLED every RUNNING run whose top-level run's owner died; their ids."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    running = client.search_runs(experiments, "attributes.status = 'RUNNING'")
    closed = []
    for run in running:
        root = run
        while _PARENT_TAG in root.data.tags:
            root = client.get_run(root.data.tags[_PARENT_TAG])
        tag = root.data.tags.get(OWNER_TAG)
        if tag is not None and is_dead(tag):
            client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
    return closed


def create_sqlite_store(uri: str, project: Path) -> None:
    """Create the SQLite tracking store of `uri` whole: in a temporary file, then renamed."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    path = path if path.is_absolute() else project / path
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():  # another process created it meanwhile
            return
        tmp = path.with_name(f".{path.name}.init.tmp")
        tmp.unlink(missing_ok=True)  # what a killed creation left
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
        try:
            _initialize_tables(engine)  # MLflow's own schema and migrations
        finally:
            engine.dispose()
        os.replace(tmp, path)


class OrphanRunsHook:
    """Creates a new SQLite tracking store whole; tags this run's top-level MLflow run with
    its owner, then closes dead runs' orphans."""

    @hook_impl(tryfirst=True)  # before kedro-mlflow's hook opens (and would create) the store
    def after_context_created(self, context: KedroContext) -> None:
        loader = context.config_loader
        if "mlflow" not in loader.config_patterns:  # what kedro-mlflow's hook adds
            loader.config_patterns.update({"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]})
        try:
            uri = (loader["mlflow"].get("server") or {}).get("mlflow_tracking_uri")
        except MissingConfigException:
            return
        if uri:
            create_sqlite_store(str(uri), Path(context.project_path))

    @hook_impl(trylast=True)  # after kedro-mlflow's hook opened the top-level run
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        if mlflow.active_run() is None:
            return
        mlflow.set_tag(OWNER_TAG, owner())
        closed = close_orphans(MlflowClient())
        if closed:
            log.info("closed %d MLflow run(s) of a killed kedro run as KILLED", len(closed))
