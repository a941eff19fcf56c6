"""Benchmark: streaming parallel ingestion of a generated imagefolder, and data wait / step.

Run: `nice -n 10 .venv/bin/python benchmarks/ingest.py [--sizes 10000 30000 100000]
[--workers 1 2] [--root /tmp/ingest_bench] [--out benchmarks/results/ingestion_cpu_2core.md]
[--data-wait-batches 4] [--pairs 1]`.
`--pairs R` alternates the worker counts R times per size and reports the median speed-up
(runs back to back meet similar load from other processes; far-apart runs do not).
A folder of 256x256 JPEGs (10 classes) is generated once at the largest size; smaller sizes
are hard links to its first images. Encoding a noisy 256 px JPEG costs more CPU than ingesting
it, so 1,000 distinct images (smooth random colour fields + noise, deterministic) are encoded
and image i is template i mod 1000 with a JPEG comment segment naming i: every file has its
own sha256 (no two records are copies) and costs a full decode.
First a per-image profile of the stages (hash, decode, RGB + bicubic fit, positioned write) in
this process, CPU time; then each (size, workers) ingestion at 224 px runs in a fresh
subprocess (`visprompt.data.ingest`, exactly what data_ingestion calls) and reports its wall
seconds and CPU seconds (user + sys of main and workers), both without the interpreter's
imports. CPU time per image is what the machine's other load changes least.
Memory of the process tree (main + workers): PSS summed over the processes (pages shared after
fork counted once; plain RSS would count the parent's imported torch once per worker), read
from /proc/<pid>/smaps_rollup every 2 s (the kernel walks every mapping of a torch-sized
process: ~0.1 s of CPU per read, so faster sampling steals a core from the run it measures),
and the main process's peak RSS (VmHWM, kept by the kernel, exact).
Each table row is appended to `--out` as soon as it is measured.
Goals (issue #14): peak RSS < 1.5 GB at every size, >= 1.6x images/s with 2 workers,
time linear in the number of images; data wait / step <= 5 % for a ResNet-50 training step
(timm resnet50, pretrained=False) fed by the 224 px shards through a DataLoader.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

CLASSES = 10
SIDE = 256
TEMPLATES = 1000
PSS_EVERY = 2.0  # seconds between PSS reads
INGEST = """
import resource, sys, time
def cpu():
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
from visprompt.data.ingest import ingest
from visprompt.data.sources import load_source
start, cpu_start = time.perf_counter(), cpu()
source = load_source("imagefolder", {"root": sys.argv[1]})
ingest(source, 224, {"train": 0.8, "val": 0.1, "test": 0.1}, 0, sys.argv[2],
       num_workers=int(sys.argv[3]))
print(time.perf_counter() - start, cpu() - cpu_start)
"""


def _template(seed: int) -> bytes:
    """A JPEG of a smooth random colour field plus noise (quality 90)."""
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(
        (SIDE, SIDE), Image.Resampling.BILINEAR
    )
    noise = rng.integers(-12, 13, (SIDE, SIDE, 3))
    pixels = np.clip(np.asarray(field, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _with_comment(jpeg: bytes, text: str) -> bytes:
    """The JPEG with a COM segment after SOI: other bytes, the same pixels."""
    payload = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def generate(root: Path, n: int, processes: int) -> Path:
    """`root/full` with (at least) n JPEGs (complete once `.complete-<n>` exists)."""
    full = root / "full"
    if any(int(mark.name.split("-")[1]) >= n for mark in full.glob(".complete-*")):
        return full
    done = full / f".complete-{n}"
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        templates = pool.map(_template, range(min(n, TEMPLATES)), chunksize=50)
    for c in range(CLASSES):
        (full / f"c{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = full / f"c{i % CLASSES}" / f"{i:06d}.jpg"
        path.write_bytes(_with_comment(templates[i % len(templates)], f"visprompt bench {i}"))
    done.write_text("")
    return full


def subset(root: Path, full: Path, n: int) -> Path:
    """The first n images of `full` as hard links (no copy, no symlink leaving the root)."""
    folder = root / f"n{n}"
    done = folder / ".complete"
    if done.is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    for i in range(n):
        source = full / f"c{i % CLASSES}" / f"{i:06d}.jpg"
        target = folder / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
    done.write_text("")
    return folder


def _median_ms(function: Callable[[Path], object], files: list[Path], repeats: int = 3) -> float:
    """Median over `repeats` passes of the CPU milliseconds per file (after one warm-up pass)."""
    for path in files[:10]:
        function(path)
    times = []
    for _ in range(repeats):
        start = time.process_time()
        for path in files:
            function(path)
        times.append((time.process_time() - start) / len(files) * 1e3)
    return float(np.median(times))


def stage_profile(images: Path, count: int = 200) -> dict[str, float]:
    """CPU ms per image of each ingestion stage, through the functions ingestion calls."""
    from visprompt.data.convert import fit, to_rgb

    files = sorted(images.rglob("*.jpg"))[:count]

    def decode(path: Path) -> Image.Image:
        with Image.open(path) as image:
            image.load()
            return image

    decoded = {path: to_rgb(decode(path))[0] for path in files}
    fitted = {path: fit(decoded[path], 224) for path in files}
    with tempfile.TemporaryFile() as fh:
        descriptor = fh.fileno()
        return {
            "read + sha256": _median_ms(lambda p: hashlib.sha256(p.read_bytes()).digest(), files),
            "decode (libjpeg)": _median_ms(decode, files),
            "RGB + bicubic fit to 224": _median_ms(
                lambda p: fit(to_rgb(decoded[p])[0], 224), files
            ),
            "positioned write (page cache)": _median_ms(
                lambda p: os.pwrite(descriptor, fitted[p].data, 0), files
            ),
        }


def _proc_bytes(process: psutil.Process, table: str, field: str) -> int:
    """One `<field>: N kB` line of `/proc/<pid>/<table>`, in bytes (0 when absent)."""
    with open(f"/proc/{process.pid}/{table}") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    return 0


def _pss(process: psutil.Process) -> int:
    """Proportional set size of one process (kernel-side sum over its mappings)."""
    return _proc_bytes(process, "smaps_rollup", "Pss")


def _hwm(process: psutil.Process) -> int:
    """Peak resident set size of one process (VmHWM)."""
    return _proc_bytes(process, "status", "VmHWM")


def ingest_run(images: Path, out: Path, workers: int) -> dict[str, float]:
    """Wall and CPU seconds (without imports), peak tree PSS and main peak RSS (bytes) of one
    ingestion subprocess."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", INGEST, str(images), str(out), str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    process = psutil.Process(child.pid)
    peak = hwm = 0
    last = 0.0
    while child.poll() is None:
        with contextlib.suppress(psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            hwm = max(hwm, _hwm(process))
            if time.monotonic() - last >= PSS_EVERY:
                last = time.monotonic()
                tree = [process, *process.children(recursive=True)]
                peak = max(peak, sum(_pss(p) for p in tree))
        time.sleep(0.2)
    output = child.stdout.read().strip().splitlines()
    if child.returncode != 0 or not output:
        raise RuntimeError(f"ingestion of {images} with {workers} worker(s) failed")
    seconds, cpu = map(float, output[-1].split())
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "cpu": cpu, "pss": peak, "hwm": hwm}


def data_wait(shards: Path, batches: int) -> float:
    """Data wait fraction of a timm resnet50 (pretrained=False) training step, batch 32."""
    import timm
    import torch

    from visprompt.data.shards import ShardDataset
    from visprompt.profiling.dataload import training_data_wait
    from visprompt.training import Preprocess

    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False, num_classes=CLASSES)
    preprocess = Preprocess(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    wait = training_data_wait(
        model, ShardDataset(shards, "train"), preprocess, 32, 1, torch.device("cpu"), batches
    )
    return wait.fraction


def _append(path: Path, text: str) -> None:
    print(text, flush=True)
    with path.open("a") as fh:
        fh.write(text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 30000, 100000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--root", type=Path, default=Path("/tmp/ingest_bench"))
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/ingestion_cpu_2core.md")
    )
    parser.add_argument("--data-wait-batches", type=int, default=0)
    parser.add_argument(
        "--pairs", type=int, default=1, help="alternate the worker counts this many times"
    )
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    full = generate(args.root, max(args.sizes), processes=os.cpu_count() or 1)
    print(f"generated {max(args.sizes)} JPEGs in {time.perf_counter() - started:.0f} s", flush=True)
    args.out.write_text(
        f"# Ingestion benchmark (CPU)\n\n`benchmarks/ingest.py`; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, python "
        f"{platform.python_version()}, load average at start "
        f"{os.getloadavg()[0]:.1f}. 256x256 JPEGs (10 classes) ingested at 224 px.\n\n"
        "CPU ms per image by stage (this process, median of 3 passes over 200 images):\n\n"
    )
    for stage, ms in stage_profile(full).items():
        _append(args.out, f"- {stage}: {ms:.2f} ms")
    _append(
        args.out,
        "\n| images | workers | seconds | images/s | speed-up vs 1 worker | CPU ms / image "
        "| peak PSS, tree (MB) | peak RSS, main (MB) | load avg |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    )
    for n in sorted(args.sizes):
        images = subset(args.root, full, n)
        speedups = []
        for _ in range(args.pairs):  # alternating runs meet similar load
            single = None
            for workers in args.workers:
                run = ingest_run(images, args.root / "out", workers)
                rate = n / run["seconds"]
                single = rate if workers == 1 else single
                speedup = f"{rate / single:.2f}x" if single else "-"
                if single and workers > 1:
                    speedups.append(rate / single)
                _append(
                    args.out,
                    f"| {n} | {workers} | {run['seconds']:.1f} | {rate:.0f} | {speedup} "
                    f"| {run['cpu'] / n * 1e3:.2f} | {run['pss'] / 2**20:.0f} "
                    f"| {run['hwm'] / 2**20:.0f} | {os.getloadavg()[0]:.1f} |",
                )
        if args.pairs > 1 and speedups:
            _append(
                args.out,
                f"\n{n} images: median speed-up of {max(args.workers)} workers over 1 in "
                f"{args.pairs} alternating pairs: {np.median(speedups):.2f}x\n",
            )
    if args.data_wait_batches:
        shards = args.root / "wait_shards"
        if not (shards / "dataset.json").is_file():
            ingest_run_keep(subset(args.root, full, min(args.sizes)), shards)
        fraction = data_wait(shards, args.data_wait_batches)
        _append(
            args.out, f"\ndata wait / step (timm resnet50, batch 32, 224 px shards): {fraction:.2%}"
        )


def ingest_run_keep(images: Path, out: Path) -> None:
    from visprompt.data.ingest import ingest
    from visprompt.data.sources import load_source

    source = load_source("imagefolder", {"root": str(images)})
    ingest(source, 224, {"train": 0.8, "val": 0.1, "test": 0.1}, 0, out, num_workers=2)


if __name__ == "__main__":
    main()
