"""MLflow runs that a killed `kedro run` left RUNNING are closed as KILLED by the next one.

SIGKILL (or a power cut) runs no handler, so the run's MLflow runs would stay RUNNING for ever
(Ctrl-C is handled in `kedro_run`). Each `kedro run` tags its top-level MLflow run with its
owner: host, process id and the process's start time (a reused pid is another process). A
RUNNING run whose top-level run belongs to a process of this host that no longer exists is
an orphan. Runs of other hosts, or without the tag, are left alone.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
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


class OrphanRunsHook:
    """Tags this run's top-level MLflow run with its owner, then closes dead runs' orphans."""

    @hook_impl(trylast=True)  # after kedro-mlflow's hook opened the top-level run
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        if mlflow.active_run() is None:
            return
        mlflow.set_tag(OWNER_TAG, owner())
        closed = close_orphans(MlflowClient())
        if closed:
            log.info("closed %d MLflow run(s) of a killed kedro run as KILLED", len(closed))
