"""`mlflow models serve -m models:/NAME@champion --env-manager local` on localhost: real HTTP
predictions equal the loaded model's, bad requests get a 4xx JSON error, the server lives on."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from registry_kit import example_images, register_candidate

from visprompt.registry.promotion import CHAMPION
from visprompt.registry.pyfunc_model import encode_png

pytestmark = pytest.mark.slow

NAME = "served-prompt"
MLFLOW = Path(sys.executable).parent / "mlflow"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, payload: object) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _images_payload(images: list[str], column: str = "image") -> dict:
    return {"dataframe_split": {"columns": [column], "data": [[image] for image in images]}}


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (uvicorn workers too), SIGKILL after 30 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A registry with one champion in a tmp project, served over HTTP: (base url, tracking uri)."""
    root = tmp_path_factory.mktemp("served_project")
    (root / "mlflow").mkdir()
    uri = f"sqlite:///{root}/mlflow/mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("serving")
        register_candidate(root, NAME, seed=3, metric=0.8)
    port = _free_port()
    log = (root / "server.log").open("w")
    process = subprocess.Popen(
        [str(MLFLOW), "models", "serve", "-m", f"models:/{NAME}@{CHAMPION}"]
        + ["--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)],
        cwd=root,
        # the venv's bin first on PATH: mlflow starts `uvicorn` from there
        env=os.environ
        | {"MLFLOW_TRACKING_URI": uri, "PATH": f"{MLFLOW.parent}{os.pathsep}{os.environ['PATH']}"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its workers die with it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited:\n{(root / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /ping in 300 s:\n{(root / 'server.log').read_text()}")
            time.sleep(1)
        yield base, uri
    finally:
        _stop(process)
        log.close()
        mlflow.set_tracking_uri(None)


def test_rest_predictions_equal_the_loaded_models(server) -> None:
    base, uri = server
    images = [encode_png(image) for image in example_images(5, seed=11)]
    status, answer = _post(f"{base}/invocations", _images_payload(images))
    assert status == 200, answer
    rows = answer["predictions"]
    mlflow.set_tracking_uri(uri)
    expected = mlflow.pyfunc.load_model(f"models:/{NAME}@{CHAMPION}").predict(
        pd.DataFrame({"image": images})
    )
    mlflow.set_tracking_uri(None)
    assert [row["label"] for row in rows] == expected["label"].tolist()
    assert [row["class_name"] for row in rows] == expected["class_name"].tolist()
    assert [row["confidence"] for row in rows] == pytest.approx(expected["confidence"].tolist())


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (_images_payload(["aGVsbG8gd29ybGQ="]), "not a base64-encoded PNG/JPEG"),  # "hello world"
        (_images_payload(["%%% not base64 %%%"]), "not a base64-encoded PNG/JPEG"),
        (_images_payload([encode_png(example_images(1)[0])], column="img"), "image"),
        ({"dataframe_split": {"columns": ["image"], "data": []}}, "empty batch"),
        ({"instances": "not a table"}, ""),
    ],
    ids=["not-an-image", "not-base64", "wrong-column", "empty-batch", "wrong-shape"],
)
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(
    server, payload: dict, message: str
) -> None:
    base, _ = server
    status, answer = _post(f"{base}/invocations", payload)
    assert 400 <= status < 500, answer
    assert answer["error_code"] in {"INVALID_PARAMETER_VALUE", "BAD_REQUEST"}
    assert message in answer["message"]
    good = _images_payload([encode_png(example_images(1, seed=2)[0])])
    status, answer = _post(f"{base}/invocations", good)
    assert status == 200 and len(answer["predictions"]) == 1
