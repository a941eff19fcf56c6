"""Request decoding: ingestion's conversion, and every limit refused before decoding."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from PIL import Image

from visprompt.data.ingest import decode_record
from visprompt.data.sources import Record
from visprompt.registry.integrity import encode_png
from visprompt.registry.serving import ImageDecoder, ServingLimits

LIMITS = ServingLimits(max_pixels=4096, max_images=3, max_request_bytes=20_000)


def _frame(*images: str) -> pd.DataFrame:
    return pd.DataFrame({"image": list(images)})


def _png(width: int, height: int) -> str:
    return encode_png(np.zeros((height, width, 3), np.uint8))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_frame(_png(65, 64)), "row 0: pixels: 4,160 exceeds the serving limit max_pixels=4,096"),
        (_frame(_png(8, 8), _png(200, 200)), "row 1: over the serving limit max_pixels=4,096"),
        (_frame(*[_png(4, 4)] * 4), "images in the request: 4 exceeds .* max_images=3"),
        (_frame("A" * 20_001), "bytes in the request: 20,001 exceeds .* max_request_bytes=20,000"),
        # every column counts, not only `image`
        (
            pd.DataFrame({"image": [_png(4, 4)], "note": ["A" * 20_000]}),
            r"bytes in the request: 20,\d{3} exceeds .* max_request_bytes=20,000",
        ),
    ],
    ids=["pixels", "bomb", "images", "bytes", "bytes-other-column"],
)
def test_each_limit_is_refused_with_its_name(frame: pd.DataFrame, message: str) -> None:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(MlflowException, match=message) as refused:
        ImageDecoder(LIMITS, 32)(frame)
    assert refused.value.get_http_status_code() == 400
    assert "VISPROMPT_SERVING_" in refused.value.message
    assert pillow_limit == Image.MAX_IMAGE_PIXELS  # the process keeps its own limit


def test_a_request_at_the_limits_decodes() -> None:
    batch = ImageDecoder(LIMITS, 32)(_frame(_png(64, 64), _png(64, 64), _png(16, 256)))
    assert batch.shape == (3, 3, 32, 32) and batch.dtype.is_floating_point is False


def test_serving_prepares_an_exif_rotated_jpeg_exactly_as_ingestion(tmp_path) -> None:
    rng = np.random.default_rng(3)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 270 degrees
    path = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (30, 70, 3), dtype=np.uint8)).save(
        path, format="JPEG", exif=exif.tobytes()
    )
    served = ImageDecoder(LIMITS, 32)(_frame(base64.b64encode(path.read_bytes()).decode()))
    _, ingested = decode_record(Record(path="photo.jpg", label="a", file=path), 32)
    np.testing.assert_array_equal(served[0].permute(1, 2, 0).numpy(), ingested)
    squashed = Image.open(io.BytesIO(path.read_bytes())).convert("RGB").resize((32, 32))
    assert not np.array_equal(np.asarray(squashed), ingested)  # the old path differed


def test_limits_come_from_the_version_and_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("VISPROMPT_SERVING_MAX_IMAGES", "7")
    limits = ServingLimits.resolve({"max_pixels": 100, "max_images": 2})
    assert (limits.max_pixels, limits.max_images) == (100, 7)
    monkeypatch.setenv("VISPROMPT_SERVING_MAX_IMAGES", "many")
    with pytest.raises(ValueError, match="VISPROMPT_SERVING_MAX_IMAGES='many' is not an integer"):
        ServingLimits.resolve({})
    with pytest.raises(ValueError, match="max_pixels must be a positive integer, got 0"):
        ServingLimits(max_pixels=0)


def test_only_the_documented_formats_are_accepted() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="GIF")
    gif = base64.b64encode(buffer.getvalue()).decode()
    with pytest.raises(MlflowException, match="row 1: a GIF image; .* PNG and JPEG only") as err:
        ImageDecoder(LIMITS, 32)(_frame(_png(4, 4), gif))
    assert err.value.get_http_status_code() == 400
