"""Many prompts, one backbone: the multi-prompt server against single-version servers.

Registers `max(--versions)` versions (linear probe, VP, AP, VPT, PGN in turn, each with its
own seed) on one ViT of the project's `vit_tiny32` shape (random weights: memory and speed
do not depend on them) in a temporary SQLite store, then for each N in `--versions`:

- starts `python -m visprompt.serving` with versions 1..N on 127.0.0.1 and records its
  process-tree RSS after warm-up and its peak under a bounded concurrent load (`--clients`
  clients, each `--requests` requests of `--images` PNG images for a random version), with
  the p50/p95 request latency;
- times a mixed batch of `--batch` rows (rows cycling over the N versions) against a
  single-version batch of the same size (the mean over the N versions of each one's own
  batch), in process (`Batcher.run`: the backbone calls only) and over HTTP (decode included).

Once: one `mlflow models serve` of version 1 (RSS after warm-up; N separate servers are
estimated as N x that: 20 processes do not fit the 2-core machine), and 50 concurrent
requests with a body over `max_request_bytes` sent to the N-version server, with a
Content-Length and chunked (peak RSS - warm RSS). Medians after warm-up; one run.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/serving_multi.py \
        --out benchmarks/results/serving_multi_cpu_2core.md
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import numpy as np
import psutil
import timm
import torch

from visprompt import methods
from visprompt.backbones import data_config, save_weights
from visprompt.registry.integrity import encode_png
from visprompt.registry.packaging import build_package
from visprompt.registry.promotion import SmokeSet, log_prompt_model
from visprompt.registry.serving import ServingLimits
from visprompt.serving.app import Batcher, Part
from visprompt.serving.versions import VersionRef, VersionSet

NAME = "bench"
#: The project's vit_tiny32 (conf/base/parameters_backbone.yml); versions have 10 classes.
VIT = dict(img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=3, num_classes=16)
METHODS = [
    ("linear_probe", {}),
    ("vp", {}),
    ("ap", {"layer": "blocks.1"}),
    ("vpt", {}),
    ("pgn", {}),
]
CLASSES = [str(i) for i in range(10)]


def register_versions(root: Path, count: int) -> None:
    """`count` versions of NAME, methods in turn, trained tensors moved off their init."""
    torch.manual_seed(0)
    backbone = timm.create_model("vit_tiny_patch16_224", **VIT).eval()
    weights = root / "vit_tiny32.safetensors"
    spec = {
        "name": "vit_tiny_patch16_224",
        "model_kwargs": VIT,
        "weights_path": str(weights),
        "sha256": save_weights(backbone, weights),
        "source": "pretrain",
        "data_config": data_config(backbone),
    }
    package = build_package(spec, CLASSES, 32, None, "rgb")
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    for i in range(count):
        method, options = METHODS[i % len(METHODS)]
        torch.manual_seed(i)
        model = methods.build(method, backbone, num_classes=len(CLASSES), **options)
        with torch.no_grad():
            for param in model.trainable_parameters():
                param.add_(0.1 * torch.randn_like(param))
        artifact = methods.save(model, root / f"artifact_{i}")
        with mlflow.start_run():
            smoke = SmokeSet(images, np.zeros(len(images), np.int64), 0.0, 1.0)
            info = log_prompt_model(artifact, package, smoke, root)
        mlflow.register_model(info.model_uri, NAME)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


@contextlib.contextmanager
def serving(command: list[str], port_flag: str, cwd: Path) -> Iterator[tuple[str, psutil.Process]]:
    """A server started with `command` + a free port, its base URL once /ping answers."""
    port = free_port()
    bin_dir = Path(sys.executable).parent
    process = subprocess.Popen(
        [*command, port_flag, str(port)],
        cwd=cwd,
        env=os.environ | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(900):
            if process.poll() is not None:
                raise SystemExit(f"server exited: {command}")
            try:
                urllib.request.urlopen(f"{base}/ping", timeout=5).read()
                break
            except OSError:
                time.sleep(1)
        yield base, psutil.Process(process.pid)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


class PeakRSS:
    """Samples a process tree's RSS every 20 ms while in use."""

    def __init__(self, process: psutil.Process) -> None:
        self.process, self.peak, self._done = process, 0, threading.Event()

    def __enter__(self) -> PeakRSS:
        self.peak = tree_rss(self.process)
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, tree_rss(self.process))
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def table(encoded: list[str], models: list[str] | None = None) -> bytes:
    if models is None:
        frame = {"columns": ["image"], "data": [[e] for e in encoded]}
    else:
        data = [list(row) for row in zip(encoded, models, strict=True)]
        frame = {"columns": ["image", "model"], "data": data}
    return json.dumps({"dataframe_split": frame}).encode()


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def mixed_vs_single(
    mixed: Callable[[], object], singles: list[Callable[[], object]], batch: int, repeats: int
) -> tuple[float, float]:
    """(mixed rows/s, single-version rows/s): medians over `repeats` rounds after one warm-up
    round, each round timing the mixed batch, then every version's own batch of the same
    size (their mean), so that load changes on the machine hit both alike."""
    mixed_times, single_times = [], []
    for round_ in range(repeats + 1):
        mixed_s = timed(mixed)
        single_s = statistics.mean(timed(single) for single in singles)
        if round_:
            mixed_times.append(mixed_s)
            single_times.append(single_s)
    return batch / statistics.median(mixed_times), batch / statistics.median(single_times)


def in_process_ratio(refs: list[str], batch: int, repeats: int) -> tuple[float, float]:
    """(mixed rows/s, single-version rows/s) of the backbone calls alone (`Batcher.run`)."""
    versions = VersionSet([VersionRef.parse(r) for r in refs])
    runner = Batcher.__new__(Batcher)  # its computation only, no worker thread
    runner.backbones = versions.backbones
    images = torch.from_numpy(
        np.random.default_rng(1).integers(0, 256, (batch, 3, 32, 32), dtype=np.uint8)
    )

    def parts(assignment: list[str]) -> list[Part]:
        out = []
        for ref in dict.fromkeys(assignment):
            entry = versions.get(ref)
            rows = [i for i, r in enumerate(assignment) if r == ref]
            x = entry.model_input(images[rows])
            out.append(Part(entry.backbone, x, entry.form, entry.model))
        return out

    mixed = parts([refs[i % len(refs)] for i in range(batch)])
    singles = [parts([ref] * batch) for ref in refs]
    return mixed_vs_single(
        lambda: runner.run(mixed), [lambda p=p: runner.run(p) for p in singles], batch, repeats
    )


def http_ratio(base: str, refs: list[str], encoded: list[str], repeats: int) -> tuple:
    batch = len(encoded)
    mixed = table(encoded, [refs[i % len(refs)] for i in range(batch)])
    singles = [table(encoded, [ref] * batch) for ref in refs]
    return mixed_vs_single(
        lambda: post(f"{base}/invocations", mixed),
        [lambda b=b: post(f"{base}/invocations", b) for b in singles],
        batch,
        repeats,
    )


def load_test(
    base: str, process: psutil.Process, refs: list[str], encoded: list[str], args
) -> tuple[float, float, int, set[int]]:
    """(p50 s, p95 s, peak RSS, HTTP codes) of `clients` x `requests` concurrent requests."""
    rng = random.Random(0)
    plan = [
        (rng.choice(refs), rng.sample(encoded, args.images))
        for _ in range(args.clients * args.requests)
    ]

    def one(item: tuple[str, list[str]]) -> tuple[int, float]:
        ref, images = item
        body = table(images, [ref] * len(images))
        start = time.perf_counter()
        status, _ = post(f"{base}/invocations", body)
        return status, time.perf_counter() - start

    with PeakRSS(process) as rss, concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
        results = list(pool.map(one, plan))
    latencies = sorted(t for _, t in results)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    return statistics.median(latencies), p95, rss.peak, {s for s, _ in results}


def oversized(base: str, process: psutil.Process, size: int, count: int, chunked: bool) -> tuple:
    """(peak - warm RSS, HTTP codes) while `count` clients send a `size`-byte body at once."""
    host, port = base.removeprefix("http://").split(":")
    body = b"{" + b" " * (size - 2) + b"}"

    def one(_: int) -> int:
        connection = http.client.HTTPConnection(host, int(port), timeout=600)
        connection.putrequest("POST", f"/invocations/{NAME}/1")
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        else:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        with contextlib.suppress(OSError):  # the server answers before the body is sent
            step = 1 << 20
            for i in range(0, len(body), step):
                part = body[i : i + step]
                connection.send(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            if chunked:
                connection.send(b"0\r\n\r\n")
        try:
            status = connection.getresponse().status
        except OSError:
            status = -1  # reset before an answer arrived
        connection.close()
        return status

    warm = tree_rss(process)
    with PeakRSS(process) as rss, concurrent.futures.ThreadPoolExecutor(count) as pool:
        codes = set(pool.map(one, range(count)))
    return rss.peak - warm, codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--versions", default="1,5,20")
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=10, help="per client")
    parser.add_argument("--images", type=int, default=8, help="per load-test request")
    parser.add_argument("--oversized", type=int, default=50, help="concurrent oversized bodies")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serving_multi.md"))
    args = parser.parse_args()
    counts = [int(n) for n in args.versions.split(",")]
    limit = ServingLimits().max_request_bytes
    images = np.random.default_rng(2).integers(0, 256, (args.batch, 32, 32, 3), dtype=np.uint8)
    encoded = [encode_png(image) for image in images]
    rows, notes, first_warm = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri = f"sqlite:///{root}/mlflow.db"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(
            experiment_id=mlflow.create_experiment("bench", artifact_location=str(root / "art"))
        )
        register_versions(root, max(counts))
        bin_dir = Path(sys.executable).parent
        single = [str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{NAME}/1"]
        single += ["--env-manager", "local", "--host", "127.0.0.1"]
        with serving(single, "-p", root) as (base, process):
            post(f"{base}/invocations", table(encoded[:8]))
            single_rss = tree_rss(process)
        for n in counts:
            refs = [f"{NAME}/{v}" for v in range(1, n + 1)]
            mixed_ip, single_ip = in_process_ratio(refs, args.batch, args.repeats)
            command = [sys.executable, "-m", "visprompt.serving"]
            command += [arg for ref in refs for arg in ("--model", ref)]
            with serving(command, "--port", root) as (base, process):
                for ref in refs:  # warm-up: every version once
                    post(f"{base}/invocations", table(encoded[:4], [ref] * 4))
                warm = tree_rss(process)
                mixed_http, single_http = http_ratio(base, refs, encoded, args.repeats)
                p50, p95, peak, codes = load_test(base, process, refs, encoded, args)
                if n == max(counts):
                    for chunked in (False, True):
                        added, over_codes = oversized(
                            base, process, limit + (1 << 20), args.oversized, chunked
                        )
                        how = "chunked, no Content-Length" if chunked else "with Content-Length"
                        notes.append(
                            f"| {n} | {args.oversized} x {(limit + (1 << 20)) / 2**20:.0f} MiB "
                            f"({how}) | {sorted(over_codes)} | {added / 2**20:.1f} MiB |"
                        )
            first_warm = first_warm or warm
            methods_in = sorted({METHODS[i % len(METHODS)][0] for i in range(n)})
            # backbone calls of a mixed batch: one per input / token shape (serving.shared)
            calls = len({m if m in ("vpt", "pgn") else "plain" for m in methods_in})
            rows.append(
                f"| {n} | {', '.join(methods_in)} | {calls} | {warm / 2**20:.0f} MiB "
                f"({warm / first_warm:.3f}x N={counts[0]}) | "
                f"{peak / 2**20:.0f} MiB | {n} x {single_rss / 2**20:.0f} = "
                f"{n * single_rss / 2**20:.0f} MiB | {mixed_ip:.0f} / {single_ip:.0f} = "
                f"{mixed_ip / single_ip:.2f} | {mixed_http:.0f} / {single_http:.0f} = "
                f"{mixed_http / single_http:.2f} | {p50 * 1000:.0f} / {p95 * 1000:.0f} ms | "
                f"{sorted(codes)} |"
            )
            print(rows[-1], flush=True)
    machine = (
        f"{platform.node()[:12]}, {os.cpu_count()} CPUs, {platform.processor() or 'cpu'}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"torch threads {torch.get_num_threads()}"
    )
    text = (
        "# Multi-prompt serving: N versions on one backbone\n\n"
        f"`{' '.join(['python', 'benchmarks/serving_multi.py', *sys.argv[1:]])}` on {machine}; "
        f"batch {args.batch}, load {args.clients} clients x {args.requests} requests x "
        f"{args.images} images; seeds 0-{max(counts) - 1} (versions), 0-2 (data).\n\n"
        "| N versions | methods | backbone calls per mixed batch | multi-prompt RSS after "
        "warm-up | peak RSS under load | "
        "N single-version servers (N x one measured) | mixed / single rows/s, in process | "
        "mixed / single rows/s, HTTP | p50 / p95 latency | HTTP codes |\n"
        + "|---" * 10
        + "|\n"
        + "\n".join(rows)
        + "\n\n| N versions | oversized requests at once | HTTP codes | peak RSS - warm RSS |\n"
        + "|---" * 4
        + "|\n"
        + "\n".join(notes)
        + "\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
