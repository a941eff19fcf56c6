"""Request images -> the model's uint8 input, through ingestion's own conversion, within limits.

A served image meets the model as a training image did: ingestion's conversion
(`visprompt.data.convert`) to the stored shard size, then the training preprocessing. Limits
(request bytes, image count, pixels from the header; Pillow's bomb limit tightened to match)
are checked before any pixel is decoded; each refusal is a 400 naming the limit.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import os
import threading
from collections.abc import Iterator
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


def bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


@dataclass(frozen=True)
class ServingLimits:
    """Per-request bounds; together they bound a server's memory (benchmarks/serving_memory.py).

    Peak decode memory of one worker is about `max_concurrent_decodes` x `max_pixels` x
    12 bytes (one decoded RGB image per slot and its converted copy), plus the request
    bodies (`max_request_bytes` each, parsed by MLflow's server before the model sees them).
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
        values = list(frame["image"])
        size = sum(len(v) if isinstance(v, str | bytes) else 0 for v in values)
        if size > self.limits.max_request_bytes:
            raise _over("max_request_bytes", size, self.limits.max_request_bytes, "image bytes")
        return values

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
