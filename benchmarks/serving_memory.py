"""Peak memory of a single-version server under concurrent requests: of the largest allowed
size, or (`--body-mib`) over `max_request_bytes`.

Registers a tiny prompt in a temporary SQLite store, serves its champion with the given
serving limits (`--server visprompt`: `python -m visprompt.registry serve`, MLflow's scoring
app behind the body limit; `--server mlflow`: `mlflow models serve --env-manager local`),
sends `--requests` requests at once (each `max_images` images of `max_pixels` pixels,
compressible so they stay under `max_request_bytes`; or one body of `--body-mib` MiB), and
samples the resident set of the server's whole process tree every 20 ms. Writes one
Markdown row.

    python benchmarks/serving_memory.py --out benchmarks/results/serving_memory.md
    python benchmarks/serving_memory.py --server visprompt --body-mib 17
    python benchmarks/serving_memory.py --server mlflow --body-mib 17
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import io
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path

import mlflow
import numpy as np
import psutil
import timm
import torch
from PIL import Image

from visprompt import methods
from visprompt.backbones import data_config, save_weights
from visprompt.data.transforms import to_model_input
from visprompt.registry.promotion import SmokeSet, register_and_promote
from visprompt.registry.serving import ServingLimits

NAME = "serving-memory"
VIT = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=4)


def register(root: Path, limits: ServingLimits) -> None:
    """A tiny linear probe as the champion of `NAME` in a store under `root`."""
    torch.manual_seed(0)
    backbone = timm.create_model("vit_tiny_patch16_224", **VIT).eval()
    weights = root / "vit.safetensors"
    spec = {
        "name": "vit_tiny_patch16_224",
        "model_kwargs": VIT,
        "weights_path": str(weights),
        "sha256": save_weights(backbone, weights),
        "source": "pretrain",
    }
    model = methods.build("linear_probe", backbone, num_classes=4)
    artifact = methods.save(model, root / "artifact")
    cfg = data_config(backbone)
    package = {
        "class_names": ["a", "b", "c", "d"],
        "preprocessing": {"image_size": 32, "mean": cfg["mean"], "std": cfg["std"]}
        | {"stored_size": 32},
        "backbone": spec,
        "serving": asdict(limits),
    }
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    pre = package["preprocessing"]
    x = to_model_input(torch.from_numpy(images).permute(0, 3, 1, 2), 32, pre["mean"], pre["std"])
    with torch.no_grad():
        labels = model(x).argmax(-1).numpy()
    with mlflow.start_run():
        register_and_promote(
            run="bench",
            artifact_dir=artifact,
            package=package,
            smoke=SmokeSet(images, labels, 1.0),
            model_name=NAME,
            metric_name="val_top1",
            metric=1.0,
            margin=0.0,
            lineage={},
        )


def largest_request(limits: ServingLimits) -> bytes:
    """`max_images` images of `max_pixels` pixels each (a gradient: small as PNG)."""
    side = math.isqrt(limits.max_pixels)
    ramp = np.linspace(0, 255, side, dtype=np.uint8)
    image = np.stack([np.broadcast_to(ramp, (side, side))] * 3, axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    count = min(limits.max_images, limits.max_request_bytes // len(encoded))
    if count < 1:
        raise SystemExit(f"one {side}x{side} PNG ({len(encoded)} B) exceeds max_request_bytes")
    frame = {"dataframe_split": {"columns": ["image"], "data": [[encoded]] * count}}
    return json.dumps(frame).encode()


def oversized_request(mib: float) -> bytes:
    """A well-formed request table of about `mib` MiB (over the limit: never decoded)."""
    rows = 64
    cell = "A" * int(mib * 2**20 / rows)
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": [[cell]] * rows}}).encode()


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=1800) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, ConnectionError):
        return 0  # closed by the server before it answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = ServingLimits()
    for field, value in asdict(defaults).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=value)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--server", choices=["visprompt", "mlflow"], default="visprompt")
    parser.add_argument("--body-mib", type=float, default=0.0, help="oversized body (MiB)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serving_memory.md"))
    args = parser.parse_args()
    limits = ServingLimits(**{f: getattr(args, f) for f in asdict(defaults)})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri = f"sqlite:///{root}/mlflow.db"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(
            experiment_id=mlflow.create_experiment("bench", artifact_location=str(root / "art"))
        )
        register(root, limits)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        bin_dir = Path(sys.executable).parent
        model = f"models:/{NAME}@champion"
        command = {
            "visprompt": [sys.executable, "-m", "visprompt.registry", "serve", "--model", model]
            + ["--host", "127.0.0.1", "--port", str(port)],
            "mlflow": [str(bin_dir / "mlflow"), "models", "serve", "-m", model]
            + ["--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)],
        }[args.server]
        server = subprocess.Popen(
            command,
            cwd=root,
            # requests queue behind the decode slots: no 60 s default timeout (504)
            env=os.environ
            | {
                "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": "1800",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    urllib.request.urlopen(f"{base}/ping", timeout=5).read()
                    break
                except OSError:
                    time.sleep(1)
            handle = psutil.Process(server.pid)
            post(f"{base}/invocations", largest_request(limits))  # warm-up: one request alone
            body = oversized_request(args.body_mib) if args.body_mib else largest_request(limits)
            idle = tree_rss(handle)
            peak, done = idle, threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, tree_rss(handle))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.requests) as pool:
                codes = list(
                    pool.map(lambda _: post(f"{base}/invocations", body), range(args.requests))
                )
            elapsed = time.perf_counter() - start
            done.set()
            sampler.join()
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    images = len(json.loads(body)["dataframe_split"]["data"])
    bound = limits.max_concurrent_decodes * limits.max_pixels * 3 * 4  # see ServingLimits
    server_name = {"visprompt": "visprompt serve", "mlflow": "mlflow models serve"}[args.server]
    row = (
        f"| {server_name} | {platform.node()[:12]} ({os.cpu_count()} CPUs) | "
        f"{limits.max_pixels:,} | {images} | {len(body) / 2**20:.1f} MiB | "
        f"{limits.max_request_bytes / 2**20:.0f} MiB | {limits.max_concurrent_decodes} | "
        f"{args.requests} | {sorted(set(codes))} | {idle / 2**20:.0f} MiB | "
        f"{peak / 2**20:.0f} MiB | {(peak - idle) / 2**20:.0f} MiB | {bound / 2**20:.0f} MiB | "
        f"{elapsed:.0f} s |"
    )
    header = (
        "| server | machine | max_pixels | images/request | request body | max_request_bytes | "
        "concurrent decodes | requests at once | HTTP codes | RSS after warm-up | peak RSS | "
        "peak - warm | decode bound (slots x pixels x 12 B) | wall |\n" + "|---" * 14 + "|\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.out.exists():
        args.out.write_text(
            "# Serving memory: concurrent requests of the largest allowed size\n\n"
            "`python benchmarks/serving_memory.py` (server process tree RSS, sampled every "
            "20 ms; `mlflow models serve --env-manager local`, 1 worker).\n\n" + header
        )
    with args.out.open("a") as fh:
        fh.write(row + "\n")
    print(row)


if __name__ == "__main__":
    main()
