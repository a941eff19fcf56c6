"""Benchmark: streaming parallel ingestion of a generated imagefolder, and data wait / step.

Run: `nice -n 10 .venv/bin/python benchmarks/ingest.py [--sizes 10000 30000 100000]
[--workers 1 2] [--root /tmp/ingest_bench] [--out benchmarks/results/ingestion_cpu_2core.md]
[--data-wait-batches 4]`.
A folder of 256x256 JPEGs (10 classes, smooth random colour fields + noise, deterministic)
is generated once at the largest size; smaller sizes are hard links to its first images.
Each (size, workers) ingestion at 224 px runs in a fresh subprocess (`visprompt.data.ingest`,
exactly what data_ingestion calls) while the parent samples the resident memory of the
whole process tree (main + workers) every 0.2 s: peak memory is the maximum of that sum of
proportional set sizes (PSS: pages shared after fork counted once; plain RSS would count the
parent's imported torch once per worker). Seconds exclude the interpreter's imports. Each table
row is appended to `--out` as soon as it is measured.
Goals (issue #14): peak RSS < 1.5 GB at every size, >= 1.6x images/s with 2 workers,
time linear in the number of images; data wait / step <= 5 % for a ResNet-50 training step
(timm resnet50, pretrained=False) fed by the 224 px shards through a DataLoader.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

CLASSES = 10
SIDE = 256
INGEST = """
import sys, time
from visprompt.data.ingest import ingest
from visprompt.data.sources import load_source
start = time.perf_counter()
source = load_source("imagefolder", {"root": sys.argv[1]})
ingest(source, 224, {"train": 0.8, "val": 0.1, "test": 0.1}, 0, sys.argv[2],
       num_workers=int(sys.argv[3]))
print(time.perf_counter() - start)
"""


def _write_image(args: tuple[Path, int]) -> None:
    path, seed = args
    if path.is_file():  # kept from a smaller run (a killed write leaves a temporary, not it)
        return
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(
        (SIDE, SIDE), Image.Resampling.BILINEAR
    )
    noise = rng.integers(-12, 13, (SIDE, SIDE, 3))
    pixels = np.clip(np.asarray(field, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(pixels).save(tmp, format="JPEG", quality=90)
    tmp.replace(path)


def generate(root: Path, n: int, processes: int) -> Path:
    """`root/full` with n JPEGs (images already there are kept)."""
    full = root / "full"
    done = full / f".complete-{n}"
    if done.is_file():
        return full
    for c in range(CLASSES):
        (full / f"c{c}").mkdir(parents=True, exist_ok=True)
    jobs = [(full / f"c{i % CLASSES}" / f"{i:06d}.jpg", i) for i in range(n)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        for _ in pool.imap_unordered(_write_image, jobs, chunksize=64):
            pass
    done.write_text("")
    return full


def subset(root: Path, full: Path, n: int) -> Path:
    """The first n images of `full` as hard links (no copy, no symlink leaving the root)."""
    folder = root / f"n{n}"
    if folder.is_dir():
        return folder
    for i in range(n):
        source = full / f"c{i % CLASSES}" / f"{i:06d}.jpg"
        target = folder / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
    return folder


def _tree_pss(process: psutil.Process) -> int:
    """Proportional set size of the tree: pages shared after fork are counted once."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_full_info().pss
    return total


def ingest_run(images: Path, out: Path, workers: int) -> tuple[float, int]:
    """(seconds of ingestion without the interpreter's imports, peak memory of the process
    tree in bytes) of one ingestion subprocess."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    child = subprocess.Popen(
        [sys.executable, "-c", INGEST, str(images), str(out), str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    peak, process = 0, psutil.Process(child.pid)
    while child.poll() is None:
        with contextlib.suppress(psutil.NoSuchProcess):
            peak = max(peak, _tree_pss(process))
        time.sleep(0.2)
    seconds = float(child.stdout.read().strip().splitlines()[-1])
    if child.returncode != 0:
        raise RuntimeError(f"ingestion of {images} with {workers} worker(s) failed")
    shutil.rmtree(out, ignore_errors=True)
    return seconds, peak


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 30000, 100000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--root", type=Path, default=Path("/tmp/ingest_bench"))
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/ingestion_cpu_2core.md")
    )
    parser.add_argument("--data-wait-batches", type=int, default=0)
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    full = generate(args.root, max(args.sizes), processes=os.cpu_count() or 1)
    print(f"generated {max(args.sizes)} JPEGs in {time.perf_counter() - started:.0f} s", flush=True)
    lines = [
        "# Ingestion benchmark (CPU)",
        "",
        f"`benchmarks/ingest.py`; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, python "
        f"{platform.python_version()}. 256x256 JPEGs (10 classes) ingested at 224 px "
        "(sha256, decode, RGB, bicubic fit, positioned writes into .npy shards). Peak memory = "
        "PSS summed over the process tree (main + workers), sampled every 0.2 s; seconds "
        "exclude imports. The machine was shared with other sessions (load varies).",
        "",
        "| images | workers | seconds | images/s | speed-up vs 1 worker | peak PSS (MB) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    for n in sorted(args.sizes):
        images = subset(args.root, full, n)
        single = None
        for workers in args.workers:
            seconds, peak = ingest_run(images, args.root / "out", workers)
            rate = n / seconds
            single = rate if workers == 1 else single
            speedup = f"{rate / single:.2f}x" if single else "-"
            row = (
                f"| {n} | {workers} | {seconds:.1f} | {rate:.0f} | {speedup} | {peak / 2**20:.0f} |"
            )
            print(row, flush=True)
            with args.out.open("a") as fh:
                fh.write(row + "\n")
    if args.data_wait_batches:
        shards = args.root / "wait_shards"
        if not (shards / "dataset.json").is_file():
            ingest_run_keep(subset(args.root, full, min(args.sizes)), shards)
        fraction = data_wait(shards, args.data_wait_batches)
        row = f"\ndata wait / step (timm resnet50, batch 32, 224 px shards): {fraction:.2%}"
        print(row, flush=True)
        with args.out.open("a") as fh:
            fh.write(row + "\n")


def ingest_run_keep(images: Path, out: Path) -> None:
    from visprompt.data.ingest import ingest
    from visprompt.data.sources import load_source

    source = load_source("imagefolder", {"root": str(images)})
    ingest(source, 224, {"train": 0.8, "val": 0.1, "test": 0.1}, 0, out, num_workers=2)


if __name__ == "__main__":
    main()
