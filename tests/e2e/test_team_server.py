"""The team setup for real: PostgreSQL + `mlflow server` (served artifact store) on localhost.

`kedro run --env team` in a project copy trains two tiny runs and registers/promotes them on
the server (the registry lock is the server-side compare-and-set); then a second, empty
directory loads the champion through the server alone and predicts like the first.
Needs the PostgreSQL server binaries (`initdb`, `pg_ctl`): skipped with a message without them.
Run with `make test-team`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_kit import free_port, make_tiny, start_server, stop_group

pytestmark = [pytest.mark.slow, pytest.mark.team]

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PG_BIN = [shutil.which(b) or f"/usr/local/bin/{b}" for b in ("initdb", "pg_ctl")]
NAME = "digits"  # the embedded default experiment's registered model


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on 127.0.0.1: its SQLAlchemy URI."""
    if not all(Path(b).is_file() for b in PG_BIN):
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install them "
            "(`apt-get install -y postgresql`) to run the team MLflow server test"
        )
    initdb, pg_ctl = PG_BIN
    # not under pytest's tmp dir: that one is private to the current user
    data = Path(tempfile.mkdtemp(prefix="visprompt-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    run = dict(check=True, capture_output=True, text=True, timeout=300)
    subprocess.run(
        _as_postgres([initdb, "-D", str(data / "db"), "-U", "postgres", "--auth=trust"]), **run
    )
    options = f"-p {port} -h 127.0.0.1 -k {data}"
    subprocess.run(
        _as_postgres([pg_ctl, "-D", str(data / "db"), "-o", options, "-l", str(data / "log")])
        + ["-w", "start"],
        **run,
    )
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data / "db"), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on the PostgreSQL store with a served artifact store: its URL."""
    artifacts = tmp_path_factory.mktemp("team_artifacts")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_server(
        [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", postgres]
        + ["--artifacts-destination", str(artifacts), "--serve-artifacts"]
        + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        f"{url}/health",
        artifacts.parent / "mlflow_server.log",
        # without the background job runner (a pool of workers this test does not use)
        env=os.environ
        | {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        },
    )
    try:
        yield url
    finally:
        stop_group(process)


def test_kedro_registers_on_the_server_and_a_second_directory_loads_the_champion(
    project_copy, mlflow_server: str, tmp_path: Path
) -> None:
    shutil.copytree(ROOT / "conf" / "team", project_copy.path / "conf" / "team")
    make_tiny(project_copy)
    project_copy.env["MLFLOW_TRACKING_URI"] = mlflow_server
    pipelines = "data_ingestion,data_validation,backbone,training,evaluation,registry"
    project_copy.run("--env", "team", "--pipelines", pipelines)
    summary = json.loads((project_copy.path / "data/08_reporting/digits/registry.json").read_text())
    assert summary["champion"] is not None
    assert [d["reason"] for d in summary["decisions"]][0] == "first champion"
    assert not (project_copy.path / "mlflow" / "mlflow.db").exists()  # nothing went to SQLite

    images = project_copy.path / "data/03_primary/shards"
    second = tmp_path / "clone_b"  # knows nothing but the server's URL
    second.mkdir()
    script = (
        "import json, sys, mlflow, numpy as np;"
        "from visprompt.data.shards import read_split;"
        "from visprompt.registry.integrity import smoke_frame;"
        f"m = mlflow.pyfunc.load_model('models:/{NAME}@champion');"
        "images, labels = read_split(sys.argv[1], 'val');"
        "pred = m.predict(smoke_frame(images))['label'].to_numpy();"
        "print(json.dumps(float(np.mean(pred == labels))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(images)],
        cwd=second,
        env={**project_copy.env, "MLFLOW_TRACKING_URI": mlflow_server},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    accuracy = json.loads(done.stdout.strip().splitlines()[-1])
    champion = next(d for d in summary["decisions"] if d["version"] == summary["champion"])
    seed = champion["lineage"]["seed"]
    output = project_copy.path / f"data/07_model_output/{champion['run']}/train/seed_{seed}"
    train = json.loads((output / "train_summary.json").read_text())
    assert accuracy == pytest.approx(train["val_top1"], abs=1e-9)
