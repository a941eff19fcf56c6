"""Request images -> the model's uint8 input, through ingestion's own conversion, within limits.

A served image meets the model as a training image did: ingestion's conversion
(`visprompt.data.convert`) to the stored shard size, then the training preprocessing. Limits
(request bytes, image count, pixels from the header; Pillow's bomb limit tightened to match)
are checked before any pixel is decoded; each refusal is a 400 naming the limit. Only PNG and
JPEG are accepted (what the API documents). `BodyLimit` refuses an HTTP body over
`max_request_bytes` before the scoring app reads or parses it (`serve_version` puts it in
front of MLflow's scoring app; the multi-prompt server uses the same class).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from PIL import Image, UnidentifiedImageError

from visprompt.data.convert import fit, to_rgb

ENV_PREFIX = "VISPROMPT_SERVING_"
#: The image formats the API documents; anything else Pillow could open is refused.
FORMATS = ("PNG", "JPEG")


def bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


@dataclass(frozen=True)
class ServingLimits:
    """Per-request bounds; together they bound a server's memory (benchmarks/serving_memory.py).

    Peak decode memory of one worker is about `max_concurrent_decodes` x `max_pixels` x
    12 bytes (one decoded RGB image per slot and its converted copy), plus the request
    bodies: `max_request_bytes` is the whole HTTP body (refused by `BodyLimit` before it is
    read) and the bytes of every column of the request table (`ImageDecoder.check`).
    """

    max_pixels: int = 4_194_304  # 2048 x 2048
    max_images: int = 64
    max_request_bytes: int = 16 * 1024 * 1024
    max_concurrent_decodes: int = 2

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"serving limit {field.name} must be a positive integer, got {value!r} "
                    f"(parameters_registry.yml: registry.serving.{field.name}, or "
                    f"{ENV_PREFIX}{field.name.upper()})"
                )

    @classmethod
    def resolve(cls, recorded: dict[str, Any] | None) -> ServingLimits:
        """The version's recorded limits, each overridable at serve time by an env variable."""
        values = dict(recorded or {})
        for field in fields(cls):
            env = os.environ.get(f"{ENV_PREFIX}{field.name.upper()}")
            if env is not None:
                try:
                    values[field.name] = int(env)
                except ValueError as err:
                    raise ValueError(
                        f"{ENV_PREFIX}{field.name.upper()}={env!r} is not an integer"
                    ) from err
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


def _cell_bytes(value: object) -> int:
    """What one cell of a request table weighs: its length for text, else its text form's."""
    return len(value) if isinstance(value, str | bytes) else len(str(value))


def _over(limit: str, value: int, maximum: int, what: str) -> MlflowException:
    return bad_request(
        f"{what}: {value:,} exceeds the serving limit {limit}={maximum:,} (raise it with "
        f"{ENV_PREFIX}{limit.upper()} when serving, or send less)"
    )


_PILLOW_LIMIT = threading.Lock()


@contextlib.contextmanager
def _bomb_limit(max_pixels: int) -> Iterator[None]:
    """Pillow's decompression-bomb limit tightened to `max_pixels` while a header is read.

    Pillow checks it in `Image.open` (a warning above, an error above twice the limit); it is
    restored afterwards, so ingestion or other code in the same process keeps its own limit.
    """
    with _PILLOW_LIMIT:
        before = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = min(before or max_pixels, max_pixels)
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = before


def prepare_image(image: Image.Image, size: int | None) -> np.ndarray:
    """One decoded image -> uint8 (size, size, 3) exactly as ingestion stores it; `size`
    None keeps its own size (a plain backbone's route: PGN's prompted pictures)."""
    rgb, _ = to_rgb(image)
    return fit(rgb, size) if size else np.asarray(rgb, dtype=np.uint8)


class ImageDecoder:
    """Checks a request against `limits` and decodes its images to uint8 NCHW."""

    def __init__(self, limits: ServingLimits, stored_size: int | None) -> None:
        self.limits = limits
        self.stored_size = stored_size
        self._slots = threading.BoundedSemaphore(limits.max_concurrent_decodes)

    def check(self, frame: Any) -> list[str]:
        """The request's base64 strings, after the shape, count and byte limits."""
        if not isinstance(frame, pd.DataFrame) or "image" not in frame.columns:
            raise bad_request(
                "expected a table with a column 'image' of base64-encoded PNG/JPEG images, e.g. "
                '{"dataframe_split": {"columns": ["image"], "data": [["<base64>"]]}}'
            )
        if len(frame) == 0:
            raise bad_request("empty batch: send at least one image")
        if len(frame) > self.limits.max_images:
            raise _over("max_images", len(frame), self.limits.max_images, "images in the request")
        size = sum(_cell_bytes(v) for column in frame.columns for v in frame[column])
        if size > self.limits.max_request_bytes:
            raise _over(
                "max_request_bytes", size, self.limits.max_request_bytes, "bytes in the request"
            )
        return list(frame["image"])

    def _open(self, row: int, raw: bytes) -> Image.Image:
        """The image with only its header read, refused when over `max_pixels`."""
        try:
            with _bomb_limit(self.limits.max_pixels):
                image = Image.open(io.BytesIO(raw))  # reads the header only
        except Image.DecompressionBombError as err:  # over twice the limit: refused at open
            raise bad_request(
                f"row {row}: over the serving limit max_pixels={self.limits.max_pixels:,} "
                f"({err}); raise it with {ENV_PREFIX}MAX_PIXELS when serving, or send less"
            ) from err
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise bad_request(
                f"row {row}: 'image' is not a base64-encoded PNG/JPEG image ({err})"
            ) from err
        if image.format not in FORMATS:
            image.close()
            raise bad_request(
                f"row {row}: a {image.format} image; the server accepts {' and '.join(FORMATS)} "
                "only: convert it (e.g. to PNG) before sending"
            )
        width, height = image.size
        if width * height > self.limits.max_pixels:
            image.close()
            raise _over("max_pixels", width * height, self.limits.max_pixels, f"row {row}: pixels")
        return image

    def __call__(self, frame: Any) -> torch.Tensor:
        raws = []
        for row, value in enumerate(self.check(frame)):
            try:
                raws.append(base64.b64decode(value, validate=True))
            except (binascii.Error, TypeError, ValueError) as err:
                raise bad_request(
                    f"row {row}: 'image' is not a base64-encoded PNG/JPEG image ({err})"
                ) from err
            self._open(row, raws[-1]).close()  # every header checked before any decode
        batch = []
        with self._slots:  # one decoded image at a time per slot: memory is bounded
            for row, raw in enumerate(raws):
                image = self._open(row, raw)
                try:
                    image.load()
                    batch.append(prepare_image(image, self.stored_size))
                except (OSError, ValueError, Image.DecompressionBombError) as err:
                    raise bad_request(f"row {row}: cannot decode the image ({err})") from err
                finally:
                    image.close()  # releases the decoded pixels now, not at garbage collection
        return torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413 (naming
    `max_request_bytes`) without being kept: a declared Content-Length is refused before any
    byte is read, a chunked body as soon as the count passes the limit. The rest of an
    over-limit body (up to `drain_factor` x the limit) is read and discarded first, so a
    client that sends the whole body still reads the answer; a client that asked
    `Expect: 100-continue` is answered before it sends anything. A body within the limit is
    handed on whole to `app`, which would read it whole anyway.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, drain_factor: int = 16) -> None:
        self.app, self.max_bytes, self.drain_limit = app, max_bytes, drain_factor * max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            size = int(declared)
            if headers.get(b"expect", b"").lower() != b"100-continue" and size <= self.drain_limit:
                await _drain(receive)
            return await self._refuse(send, size)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                chunks.clear()
                if message.get("more_body"):
                    await _drain(receive, self.drain_limit - size)
                return await self._refuse(send, size)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, size: int) -> None:
        error = _over("max_request_bytes", size, self.max_bytes, "request body bytes")
        payload = json.dumps({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": error.message})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": payload.encode()})


async def _drain(receive: Receive, budget: int | None = None) -> None:
    """Read and drop the rest of a request body (at most `budget` bytes)."""
    read = 0
    while budget is None or read <= budget:
        message = await receive()
        read += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            return


def scoring_app(model_uri: str) -> BodyLimit:
    """MLflow's own scoring app (`/invocations`, `/ping`) for one version, behind `BodyLimit`
    at the version's `max_request_bytes` (or its VISPROMPT_SERVING_ override)."""
    from mlflow.pyfunc import load_model, scoring_server

    model = load_model(model_uri)
    limits = model.unwrap_python_model().decode.limits
    return BodyLimit(scoring_server.init(model), limits.max_request_bytes)


def serve_version(model_uri: str, host: str = "127.0.0.1", port: int = 5000) -> None:
    """Serve one version as `mlflow models serve --env-manager local` does (one uvicorn
    worker, MLflow's request format and timeout), with bounded request bodies."""
    import uvicorn

    uvicorn.run(scoring_app(model_uri), host=host, port=port, workers=1, log_level="warning")
