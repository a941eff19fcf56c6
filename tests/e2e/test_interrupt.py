"""Ctrl-C during `kedro run` (a SIGINT to its whole process group, as a terminal sends it)
stops the run within seconds and closes its MLflow runs as KILLED, none left RUNNING."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import pytest
from e2e_kit import VENV_BIN, make_tiny, stop_group, tiny_training

pytestmark = pytest.mark.slow

#: Seconds from Ctrl-C to the process's exit that count as "stopped at once" on a loaded
#: 2-core machine (closing the MLflow runs is two SQLite writes).
STOP_WITHIN_S = 10


def _interrupt_when(process: subprocess.Popen, marker: str, timeout: float = 300) -> list[str]:
    """Read the run's console until a line contains `marker`, then send Ctrl-C."""
    lines = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            time.sleep(1)  # inside the node's work, not at its first line
            os.killpg(process.pid, signal.SIGINT)
            return lines
        if time.monotonic() > deadline:
            break
    stop_group(process)
    pytest.fail(f"'{marker}' never printed:\n{''.join(lines)}")


def test_ctrl_c_during_training_stops_at_once_and_kills_the_mlflow_runs(project_copy) -> None:
    # one run, enough epochs that training is still going when Ctrl-C arrives
    make_tiny(project_copy, tiny_training(["lp"], epochs=500))
    process = subprocess.Popen(
        [str(VENV_BIN / "kedro"), "run", "--pipelines",
         "data_ingestion,data_validation,backbone,training"],
        cwd=project_copy.path,
        env=project_copy.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C reaches all of it, not pytest
        # a terminal's Ctrl-C: pytest started in the background (`make test &`) inherits an
        # ignored SIGINT, and Python keeps it ignored, so the run would never see Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        lines = _interrupt_when(process, "lp.seed_0.train ...")
        sent = time.monotonic()
        rest, _ = process.communicate(timeout=120)
        stopped_after = time.monotonic() - sent
    finally:
        stop_group(process)
    output = "".join(lines) + rest
    print(f"exit {stopped_after:.1f} s after Ctrl-C")
    assert process.returncode == 130, output
    assert stopped_after < STOP_WITHIN_S, f"{stopped_after:.1f} s after Ctrl-C:\n{output}"
    assert "MLflow run(s) closed as KILLED" in output
    assert "Traceback" not in output

    db = sqlite3.connect(project_copy.path / "mlflow/mlflow.db")
    statuses = dict(db.execute("SELECT name, status FROM runs").fetchall())
    assert "RUNNING" not in statuses.values(), statuses
    assert statuses["lp.seed_0"] == "KILLED"
    # the kedro run's own run (kedro-mlflow's) is killed too; finished earlier runs stay so
    parent = db.execute(
        "SELECT r.status FROM runs r JOIN tags t ON t.value = r.run_uuid "
        "JOIN runs c ON c.run_uuid = t.run_uuid "
        "WHERE t.key = 'mlflow.parentRunId' AND c.name = 'lp.seed_0'"
    ).fetchone()[0]
    assert parent == "KILLED"
