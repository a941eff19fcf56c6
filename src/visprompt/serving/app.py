"""The multi-prompt server's HTTP app (Starlette, served by uvicorn on 127.0.0.1).

Routes:
- `POST /invocations/{name}/{version-or-alias}`: every image for that version.
- `POST /invocations`: the version per request (`"model": "digits@champion"` next to the
  table) or per row (a `model` column): a mixed batch.
- `POST /backbones/{key}/features`: the plain backbone's pooled features, images at their own
  size on the patch grid (PGN's client-server mode: the client prompts, the server is the
  unmodified backbone).
- `GET /versions`, `GET /ping`.

Bodies are MLflow's scoring format (`dataframe_split` / `dataframe_records`, a column
`image` of base64 PNG/JPEG). A body over `max_request_bytes` is refused (413) from its
Content-Length before any of it is read, and a body without one is read in chunks and
refused as soon as it passes the limit; at most `max_concurrent_decodes` bodies are read and
decoded at once, so the memory requests hold is bounded however many arrive. Requests are
queued to one worker thread that takes everything queued and runs the shareable versions'
samples in one backbone call per backbone (`serving.shared`); versions whose adaptation
changes backbone weights run alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import queue
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.scoring_server import infer_and_parse_data
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from torch import nn

from visprompt.data.transforms import normalize
from visprompt.methods.base import SharedForm
from visprompt.registry.pyfunc_model import predictions
from visprompt.registry.serving import ImageDecoder, ServingLimits, bad_request
from visprompt.serving.shared import shared_logits
from visprompt.serving.versions import Backbones, Loaded, VersionSet

MODEL_COLUMN = "model"


class HTTPError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Part:
    """Normalised images for one backbone: through a shared `form`, or a version's own `model`."""

    backbone: str
    images: torch.Tensor
    form: SharedForm | None = None
    model: nn.Module | None = None


class Batcher:
    """One worker thread: takes every queued job (up to `max_rows` rows) and computes them
    together, so concurrent requests for different versions share backbone calls."""

    def __init__(self, backbones: Backbones, max_rows: int = 256) -> None:
        self.backbones, self.max_rows = backbones, max_rows
        self._jobs: queue.Queue[tuple[list[Part], Future]] = queue.Queue()
        threading.Thread(target=self._work, name="batcher", daemon=True).start()

    def submit(self, parts: list[Part]) -> Future:
        future: Future = Future()
        self._jobs.put((parts, future))
        return future

    def _take(self) -> list[tuple[list[Part], Future]]:
        jobs = [self._jobs.get()]
        rows = sum(len(p.images) for p in jobs[0][0])
        while rows < self.max_rows:
            try:
                jobs.append(self._jobs.get_nowait())
            except queue.Empty:
                break
            rows += sum(len(p.images) for p in jobs[-1][0])
        return jobs

    def run(self, parts: Sequence[Part]) -> list[torch.Tensor]:
        """Logits of every part; the parts of one version (several requests) run as one, so
        its own modules (a PGN generator, a VP prompt) run once per batch."""
        versions: dict[int, list[int]] = {}
        for i, part in enumerate(parts):
            own = part.form if part.form is not None else part.model
            versions.setdefault(id(own), []).append(i)
        joined = [
            dataclasses.replace(parts[m[0]], images=torch.cat([parts[i].images for i in m]))
            for m in versions.values()
        ]
        out: list[torch.Tensor] = [torch.empty(0)] * len(parts)
        for members, logits in zip(versions.values(), self._run(joined), strict=True):
            sizes = [len(parts[i].images) for i in members]
            for i, piece in zip(members, logits.split(sizes), strict=True):
                out[i] = piece
        return out

    def _run(self, parts: Sequence[Part]) -> list[torch.Tensor]:
        """Logits of every part: shared parts in one call per backbone, the others alone."""
        out: list[torch.Tensor] = [torch.empty(0)] * len(parts)
        by_backbone: dict[str, list[int]] = {}
        with torch.no_grad(), self.backbones.in_use:
            for i, part in enumerate(parts):
                if part.form is None:
                    out[i] = part.model(part.images)
                else:
                    by_backbone.setdefault(part.backbone, []).append(i)
            for key, members in by_backbone.items():
                items = [(parts[i].form, parts[i].images) for i in members]
                for i, logits in zip(
                    members, shared_logits(self.backbones[key], items), strict=True
                ):
                    out[i] = logits
        return out

    def _work(self) -> None:
        while True:
            jobs = self._take()
            parts = [part for job_parts, _ in jobs for part in job_parts]
            try:
                logits = iter(self.run(parts))
            except Exception as err:  # every waiting request gets the error
                for _, future in jobs:
                    future.set_exception(err)
                continue
            for job_parts, future in jobs:
                future.set_result([next(logits) for _ in job_parts])


def check_declared_length(request: Request, limit: int) -> None:
    """Refuse (413) a body whose Content-Length is over `limit`, before reading any of it."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise HTTPError(400, "BAD_REQUEST", f"Content-Length {declared!r} is not a number")
    if int(declared) > limit:
        raise HTTPError(413, "REQUEST_LIMIT_EXCEEDED", _too_large(int(declared), limit))


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as the chunks read pass `limit` (no Content-Length)."""
    check_declared_length(request, limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, "REQUEST_LIMIT_EXCEEDED", _too_large(size, limit, "at least"))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int, qualifier: str = "") -> str:
    return (
        f"request body of {qualifier + ' ' if qualifier else ''}{size:,} bytes exceeds the "
        f"serving limit max_request_bytes={limit:,} (every column counts; raise it with "
        "VISPROMPT_SERVING_MAX_REQUEST_BYTES or --max-request-bytes when serving, or send less)"
    )


def parse_table(body: bytes) -> tuple[pd.DataFrame, str | None]:
    """(the request table, the request-level `model` field if any)."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise bad_request(f"the body is not JSON ({err})") from err
    if not isinstance(data, dict):
        raise bad_request('expected a JSON object such as {"dataframe_split": ...}')
    model = data.pop(MODEL_COLUMN, None)
    frame = infer_and_parse_data(data)
    if not isinstance(frame, pd.DataFrame) or "image" not in frame.columns:
        raise bad_request(
            "expected a table with a column 'image' of base64-encoded PNG/JPEG images, e.g. "
            '{"dataframe_split": {"columns": ["image"], "data": [["<base64>"]]}}'
        )
    return frame, None if model is None else str(model)


def prediction_rows(entry: Loaded, logits: torch.Tensor) -> list[dict]:
    """The single-version server's answer rows (`pyfunc_model.predictions`) + which version."""
    frame = predictions(logits, entry.class_names, entry.calibration)
    frame["probabilities"] = [p.tolist() for p in frame["probabilities"]]
    frame["ood_score"] = frame["ood_score"].astype(object).where(frame["ood_score"].notna(), None)
    rows = frame.to_dict("records")
    return [{MODEL_COLUMN: entry.name, "version": entry.version, **row} for row in rows]


def create_app(versions: VersionSet, limits: ServingLimits) -> Starlette:
    """The Starlette app serving `versions` within `limits` (body bytes, images per request)."""
    batcher = Batcher(versions.backbones)

    def decode(frame: pd.DataFrame, names: list[str]) -> tuple[list[Loaded], list, list[Part]]:
        if len(frame) > limits.max_images:
            raise bad_request(
                f"images in the request: {len(frame):,} exceeds the serving limit "
                f"max_images={limits.max_images:,}"
            )
        groups: dict[str, list[int]] = {}
        for row, name in enumerate(names):
            groups.setdefault(name, []).append(row)
        entries = {name: versions.get(name) for name in groups}
        # versions sharing a decoder and preprocessing: their rows decoded in one pass
        inputs: dict[tuple, tuple[Loaded, list[int]]] = {}
        for name, members in groups.items():
            entry = entries[name]
            key = (id(entry.decode), json.dumps(entry.preprocessing, sort_keys=True))
            inputs.setdefault(key, (entry, []))[1].extend(members)
        column, decoded = list(frame["image"]), {}
        for entry, members in inputs.values():
            images = entry.decode(pd.DataFrame({"image": [column[i] for i in members]}))
            x = entry.model_input(images)
            decoded |= {row: (x, j) for j, row in enumerate(members)}
        parts = []
        for name, members in groups.items():
            entry = entries[name]
            x = decoded[members[0]][0]
            index = torch.tensor([decoded[row][1] for row in members])
            parts.append(Part(entry.backbone, x[index], entry.form, entry.model))
        return list(entries.values()), list(groups.values()), parts

    #: Bodies read, parsed and decoded at once: what requests hold in memory is bounded by
    #: this x max_request_bytes, however many are sent (an oversized one is refused unread).
    bodies = asyncio.Semaphore(limits.max_concurrent_decodes)

    async def read_images(request: Request, route_model: str | None) -> tuple:
        frame, model = parse_table(await read_body(request, limits.max_request_bytes))
        if route_model is not None:
            names = [route_model] * len(frame)
        elif MODEL_COLUMN in frame.columns:
            names = [str(v) for v in frame[MODEL_COLUMN]]
        elif model is not None:
            names = [model] * len(frame)
        else:
            raise bad_request(
                "name the version: POST /invocations/NAME/VERSION-OR-ALIAS, a 'model' field "
                '("model": "digits@champion") or a \'model\' column, one per row'
            )
        if len(frame) == 0:
            raise bad_request("empty batch: send at least one image")
        return len(frame), *(await run_in_threadpool(decode, frame, names))

    async def predict(request: Request, route_model: str | None) -> list[dict]:
        check_declared_length(request, limits.max_request_bytes)
        async with bodies:  # the body and its table are gone when this block ends
            count, entries, rows, parts = await read_images(request, route_model)
        logits = await asyncio.wrap_future(batcher.submit(parts))
        out: list[dict] = [{}] * count
        for entry, members, part_logits in zip(entries, rows, logits, strict=True):
            for row, prediction in zip(members, prediction_rows(entry, part_logits), strict=True):
                out[row] = prediction
        return out

    async def invocations(request: Request) -> JSONResponse:
        params = request.path_params
        route_model = None
        if "name" in params:
            ref = params["ref"]
            route_model = f"{params['name']}/{ref}" if ref.isdigit() else f"{params['name']}@{ref}"
        return await _answer(lambda: predict(request, route_model))

    async def features(request: Request) -> JSONResponse:
        async def compute() -> dict:
            key = _backbone(versions.backbones, request.path_params["key"])
            check_declared_length(request, limits.max_request_bytes)
            async with bodies:
                frame, _ = parse_table(await read_body(request, limits.max_request_bytes))
                images = await run_in_threadpool(_decode_own_size, frame, limits)
                del frame
            backbone = versions.backbones[key]
            _check_grid(backbone, images)
            norm = versions.backbones.normalisation[key]
            x = normalize(images.float() / 255.0, norm["mean"], norm["std"])
            part = Part(key, x, SharedForm(head=nn.Identity()))
            (pooled,) = await asyncio.wrap_future(batcher.submit([part]))
            return {"backbone": key[:12], "features": pooled.tolist()}

        return await _answer(compute)

    async def ping(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def listing(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "versions": versions.describe(),
                "backbones": [key[:12] for key in versions.backbones.checksums()],
                "max_request_bytes": limits.max_request_bytes,
            }
        )

    return Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/versions", listing, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
            Route("/invocations/{name}/{ref}", invocations, methods=["POST"]),
            Route("/backbones/{key}/features", features, methods=["POST"]),
        ]
    )


async def _answer(compute: Callable[[], Awaitable[object]]) -> JSONResponse:
    try:
        result = await compute()
    except HTTPError as err:
        return JSONResponse({"error_code": err.code, "message": err.message}, err.status)
    except MlflowException as err:
        body = {"error_code": err.error_code, "message": err.message}
        return JSONResponse(body, err.get_http_status_code())
    except KeyError as err:
        return JSONResponse({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": err.args[0]}, 404)
    if isinstance(result, list):
        return JSONResponse({"predictions": result})
    return JSONResponse(result)


def _backbone(backbones: Backbones, prefix: str) -> str:
    matches = [key for key in backbones.checksums() if key.startswith(prefix)] if prefix else []
    if len(matches) != 1:
        raise KeyError(
            f"backbone {prefix!r} is not served here (or is ambiguous); served: "
            f"{[key[:12] for key in backbones.checksums()]}"
        )
    return matches[0]


def _decode_own_size(frame: pd.DataFrame, limits: ServingLimits) -> torch.Tensor:
    """The request's images at their own size (no resizing: a prompt must stay on the grid)."""
    try:
        return ImageDecoder(limits, None)(frame)
    except ValueError as err:  # np.stack of different sizes; the limits raise MlflowException
        raise bad_request(f"the images of one request must share one size ({err})") from err


def _check_grid(backbone: nn.Module, images: torch.Tensor) -> None:
    embed = getattr(backbone, "patch_embed", None)
    if embed is None:
        return
    patch = int(embed.patch_size[0])
    height, width = images.shape[-2:]
    if height % patch or width % patch:
        raise bad_request(
            f"images of {width}x{height} px are not on the backbone's {patch} px patch grid: "
            "send the prompted image as the client made it (no resizing)"
        )
