"""Ctrl-C during `kedro run` (a SIGINT to its whole process group, as a terminal sends it)
stops the run within seconds and closes its MLflow runs as KILLED, none left RUNNING."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest
from e2e_kit import VENV_BIN, make_tiny, stop_group, tiny_training

pytestmark = pytest.mark.slow

#: Seconds from Ctrl-C to the process's exit that count as "stopped at once" on a loaded
#: 2-core machine (closing the MLflow runs is two SQLite writes).
STOP_WITHIN_S = 10


def _interrupt_when_running(
    process: subprocess.Popen, db: Path, run_name: str, timeout: float = 300
) -> None:
    """Send Ctrl-C once MLflow holds `run_name` as RUNNING: the seed's training has begun
    (its nested run opens just before the first epoch and closes after the last)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                row = conn.execute("SELECT status FROM runs WHERE name = ?", (run_name,))
                status = (row.fetchone() or [None])[0]
        except sqlite3.OperationalError:  # no store or no tables yet
            status = None
        if status == "RUNNING":
            time.sleep(1)  # inside the epochs, not at their first line
            os.killpg(process.pid, signal.SIGINT)
            return
        time.sleep(0.2)
    stop_group(process)
    pytest.fail(f"MLflow run '{run_name}' never RUNNING (exit code {process.returncode})")


def test_ctrl_c_during_training_stops_at_once_and_kills_the_mlflow_runs(
    project_copy, tmp_path: Path
) -> None:
    # one run, enough epochs that training is still going when Ctrl-C arrives
    make_tiny(project_copy, tiny_training(["lp"], epochs=500))
    console = (tmp_path / "console.txt").open("w+")
    db = project_copy.path / "mlflow/mlflow.db"
    process = subprocess.Popen(
        [str(VENV_BIN / "kedro"), "run", "--pipelines",
         "data_ingestion,data_validation,backbone,training"],
        cwd=project_copy.path,
        env=project_copy.env,
        stdout=console,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C reaches all of it, not pytest
        # a terminal's Ctrl-C: pytest started in the background (`make test &`) inherits an
        # ignored SIGINT, and Python keeps it ignored, so the run would never see Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        _interrupt_when_running(process, db, "lp.seed_0")
        sent = time.monotonic()
        process.wait(timeout=120)
        stopped_after = time.monotonic() - sent
    finally:
        stop_group(process)
        console.seek(0)
        output = console.read()
        console.close()
    print(f"exit {stopped_after:.1f} s after Ctrl-C")
    assert process.returncode == 130, output
    assert stopped_after < STOP_WITHIN_S, f"{stopped_after:.1f} s after Ctrl-C:\n{output}"
    assert "MLflow run(s) closed as KILLED" in output
    assert "Traceback" not in output
    # the nodes before training finished (one line each); the training node never did
    assert re.search(r"^\S+ INFO +\[\d+/\d+\] validate_manifest ", output, re.M), output
    assert " lp.seed_0.train " not in output, output

    store = sqlite3.connect(db)
    statuses = dict(store.execute("SELECT name, status FROM runs").fetchall())
    assert "RUNNING" not in statuses.values(), statuses
    assert statuses["lp.seed_0"] == "KILLED"
    # the kedro run's own run (kedro-mlflow's) is killed too; finished earlier runs stay so
    parent = store.execute(
        "SELECT r.status FROM runs r JOIN tags t ON t.value = r.run_uuid "
        "JOIN runs c ON c.run_uuid = t.run_uuid "
        "WHERE t.key = 'mlflow.parentRunId' AND c.name = 'lp.seed_0'"
    ).fetchone()[0]
    assert parent == "KILLED"
