"""`python -m visprompt.registry serve --model models:/NAME@champion` on localhost (MLflow's
scoring app behind the body limit), started in a directory outside the project whose
conflicting `data/06_models/backbones/*.safetensors` must be ignored: real HTTP predictions
equal the loaded model's and the offline path's (ingestion + predict, on an EXIF-rotated
non-square JPEG), requests over a serving limit, GIFs and bad requests get a 4xx JSON error
naming the problem, and the server lives on. `mlflow models serve --env-manager local` serves
the same version with the same answers."""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from e2e_kit import free_port, start_server, stop_group
from PIL import Image
from registry_kit import example_images, make_package, register_package, smoke_for

from visprompt.data.ingest import decode_record
from visprompt.data.sources import Record
from visprompt.data.transforms import to_model_input
from visprompt.registry.integrity import encode_png
from visprompt.registry.promotion import CHAMPION

pytestmark = pytest.mark.slow

NAME = "served-prompt"
MLFLOW = Path(sys.executable).parent / "mlflow"


def _post(url: str, payload: object) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _gif() -> str:
    buffer = io.BytesIO()
    Image.fromarray(example_images(1)[0]).save(buffer, format="GIF")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _images_payload(images: list[str], column: str = "image") -> dict:
    return {"dataframe_split": {"columns": [column], "data": [[image] for image in images]}}


#: Serving limits of the test server (env overrides of the version's recorded limits).
LIMITS = {"MAX_PIXELS": 4096, "MAX_IMAGES": 8, "MAX_REQUEST_BYTES": 30_000}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, object, dict]]:
    """A registry with one champion in a tmp project, served over HTTP from another folder:
    (base url, tracking uri, the champion's method model, its package)."""
    root = tmp_path_factory.mktemp("served_project")
    (root / "mlflow").mkdir()
    uri = f"sqlite:///{root}/mlflow/mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(root)
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("serving")
        artifact, package, model = make_package(root, seed=3)
        register_package(root, NAME, artifact, package, smoke_for(model, package), 0.8)
    weights = package["backbone"]["weights_path"]
    (root / weights).unlink()  # the version must not need the project's files
    outside = tmp_path_factory.mktemp("deployment_host")
    (outside / weights).parent.mkdir(parents=True)
    (outside / weights).write_bytes(b"a different file under the same name")
    port = free_port()
    limits = {f"VISPROMPT_SERVING_{k}": str(v) for k, v in LIMITS.items()}
    base = f"http://127.0.0.1:{port}"
    model_uri = f"models:/{NAME}@{CHAMPION}"
    process = start_server(
        [sys.executable, "-m", "visprompt.registry", "serve", "--model", model_uri]
        + ["--host", "127.0.0.1", "--port", str(port)],
        f"{base}/ping",
        root / "server.log",
        cwd=outside,
        env=os.environ
        | limits
        | {"MLFLOW_TRACKING_URI": uri, "VISPROMPT_PROJECT_DIR": str(outside)},
    )
    try:
        yield base, uri, model, package
    finally:
        stop_group(process)
        mlflow.set_tracking_uri(None)


def test_mlflow_models_serve_answers_as_the_bounded_server(server, tmp_path) -> None:
    base, uri, _, _ = server
    port = free_port()
    process = start_server(
        [str(MLFLOW), "models", "serve", "-m", f"models:/{NAME}@{CHAMPION}"]
        + ["--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)],
        f"http://127.0.0.1:{port}/ping",
        tmp_path / "mlflow-serve.log",
        cwd=tmp_path,
        # the venv's bin first on PATH: mlflow starts `uvicorn` from there
        env=os.environ
        | {"MLFLOW_TRACKING_URI": uri, "PATH": f"{MLFLOW.parent}{os.pathsep}{os.environ['PATH']}"},
    )
    try:
        payload = _images_payload([encode_png(image) for image in example_images(3, seed=12)])
        plain = _post(f"http://127.0.0.1:{port}/invocations", payload)
    finally:
        stop_group(process)
    assert plain == _post(f"{base}/invocations", payload)


def test_rest_predictions_equal_the_loaded_models(server) -> None:
    base, uri, _, _ = server
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
        (_images_payload([_gif()]), "a GIF image; the server accepts PNG and JPEG only"),
    ],
    ids=["not-an-image", "not-base64", "wrong-column", "empty-batch", "wrong-shape", "gif"],
)
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(
    server, payload: dict, message: str
) -> None:
    base, *_ = server
    status, answer = _post(f"{base}/invocations", payload)
    assert 400 <= status < 500, answer
    assert answer["error_code"] in {"INVALID_PARAMETER_VALUE", "BAD_REQUEST"}
    assert message in answer["message"]
    good = _images_payload([encode_png(example_images(1, seed=2)[0])])
    status, answer = _post(f"{base}/invocations", good)
    assert status == 200 and len(answer["predictions"]) == 1


def _exif_rotated_jpeg(path: Path) -> Path:
    """A 60 x 40 JPEG whose EXIF orientation (6: rotate 90 degrees) makes it 40 x 60."""
    rng = np.random.default_rng(7)
    image = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, format="JPEG", quality=90, exif=exif.tobytes())
    return path


def test_rest_probabilities_equal_ingestion_then_offline_predict(server, tmp_path) -> None:
    base, _, model, package = server
    jpeg = _exif_rotated_jpeg(tmp_path / "rotated.jpg")
    payload = base64.b64encode(jpeg.read_bytes()).decode("ascii")
    status, answer = _post(f"{base}/invocations", _images_payload([payload]))
    assert status == 200, answer
    served = np.asarray(answer["predictions"][0]["probabilities"])
    row, pixels = decode_record(Record(path="rotated.jpg", label="0", file=jpeg), 32)
    assert (row["width"], row["height"], row["exif_rotated"]) == (60, 40, True)
    pre = package["preprocessing"]
    x = torch.from_numpy(pixels[None]).permute(0, 3, 1, 2)
    with torch.no_grad():
        offline = model.eval()(to_model_input(x, 32, pre["mean"], pre["std"])).softmax(-1)
    np.testing.assert_allclose(served, offline[0].numpy(), rtol=0, atol=1e-6)


def _png_of_size(width: int, height: int) -> str:
    return encode_png(np.zeros((height, width, 3), np.uint8))


@pytest.mark.parametrize(
    ("images", "limit"),
    [
        ([_png_of_size(80, 80)], "max_pixels=4,096"),  # over the limit, under Pillow's 2x
        ([_png_of_size(200, 200)], "max_pixels=4,096"),  # Pillow's bomb check at open
        ([_png_of_size(8, 8)] * 9, "max_images=8"),
    ],
    ids=["pixels", "pixels-bomb", "images"],
)
def test_requests_over_a_limit_get_a_400_naming_it(server, images: list[str], limit: str) -> None:
    base, *_ = server
    status, answer = _post(f"{base}/invocations", _images_payload(images))
    assert status == 400, answer
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    assert limit in answer["message"] and "VISPROMPT_SERVING_" in answer["message"]


def test_a_body_over_the_limit_gets_a_413_before_mlflow_parses_it(server) -> None:
    base, *_ = server
    images = [encode_png(image) for image in example_images(8)]  # ~50 KB of JSON
    status, answer = _post(f"{base}/invocations", _images_payload(images))
    assert status == 413 and answer["error_code"] == "REQUEST_LIMIT_EXCEEDED", answer
    assert "max_request_bytes=30,000" in answer["message"]
    good = _images_payload([encode_png(example_images(1, seed=2)[0])])
    assert _post(f"{base}/invocations", good)[0] == 200
