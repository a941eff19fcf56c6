"""MLflow after a kill: runs left RUNNING by a dead process are closed as KILLED by the next
run (a live process's runs and runs without an owner are left alone); a new SQLite store is
created whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from visprompt.pipelines import orphans


def test_runs_of_a_dead_owner_are_killed_others_stay(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_owner = orphans.owner(dead.pid)  # its start time, read while it lives
    dead.wait()

    def run(owner: str | None, parent: str | None = None) -> str:
        tags = {} if owner is None else {orphans.OWNER_TAG: owner}
        if parent is not None:
            tags["mlflow.parentRunId"] = parent
        return client.create_run(experiment, tags=tags).info.run_id

    killed_root = run(dead_owner)
    killed_child = run(None, parent=killed_root)
    live_root = run(orphans.owner())
    live_child = run(None, parent=live_root)
    unowned = run(None)
    finished = run(dead_owner)
    client.set_terminated(finished, "FINISHED")

    assert orphans.is_dead(dead_owner) and not orphans.is_dead(orphans.owner())
    assert sorted(orphans.close_orphans(client)) == sorted([killed_root, killed_child])
    status = {r: client.get_run(r).info.status for r in
              (killed_root, killed_child, live_root, live_child, unowned, finished)}  # fmt: skip
    assert status == {
        killed_root: "KILLED",
        killed_child: "KILLED",
        live_root: "RUNNING",
        live_child: "RUNNING",
        unowned: "RUNNING",
        finished: "FINISHED",
    }
    assert orphans.close_orphans(client) == []  # nothing left to close


def test_a_new_tracking_store_is_created_whole(tmp_path: Path) -> None:
    """What a killed creation left (the temporary file) is replaced; the store opens."""
    (tmp_path / "mlflow").mkdir()
    leftover = tmp_path / "mlflow/.mlflow.db.init.tmp"
    leftover.write_bytes(b"half a schema")
    orphans.create_sqlite_store("sqlite:///mlflow/mlflow.db", tmp_path)
    assert not leftover.exists()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow/mlflow.db'}")
    assert client.get_experiment(client.create_experiment("e")).name == "e"
