"""Benchmark: SPT initialisation time per strategy vs one VPT-deep training epoch.

Run: `.venv/bin/python benchmarks/spt_init.py [--out FILE] [--synthetic-images 10000]`.
On the embedded default (digits training split at 32 px) and on a synthetic set of
10,000 images, with the project's configured tiny ViT (parameters_backbone.yml, key `vit`;
its trained weights when the backbone pipeline has run, else the same architecture
untrained), `vpt_deep`'s options and training defaults (parameters_training.yml) and
prompt_init's memory budget (parameters_prompt_init.yml). Every number of a table comes
from one run on one machine, so the ratios compare like with like.
Targets (issue #5): k-means <= 1 epoch; sampling strategies <= 5 % of an epoch.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from visprompt import backbones, methods
from visprompt.data.ingest import ingest
from visprompt.data.shards import ShardDataset, write_split
from visprompt.data.sources import load_source, synthetic
from visprompt.prompt_init import STRATEGIES, InitConfig, ShardStream, build_prompt_inits
from visprompt.training import Preprocess, TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "base"
SPECS = ROOT / "data" / "06_models" / "backbones" / "specs.json"


def conf(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONF / f"parameters_{name}.yml").read_text())


def project_backbone() -> tuple[torch.nn.Module, Preprocess, str]:
    """The configured `vit` backbone: trained weights from the backbone pipeline if present."""
    params = conf("backbone")["backbone"]
    entry = params["models"][params["build"]["vit"]]
    if SPECS.is_file() and "vit" in (specs := json.loads(SPECS.read_text())):
        spec = specs["vit"]
        preprocess = Preprocess.from_data_config(spec["data_config"])
        return backbones.from_spec(spec), preprocess, f"{entry['name']} (weights {SPECS})"
    torch.manual_seed(0)
    model = backbones.freeze(backbones.create_backbone(entry["name"], **entry["model_kwargs"]))
    side = entry["image_size"]
    config = backbones.data_config(model) | {"input_size": (3, side, side)}
    described = f"{entry['name']} (untrained: run the backbone pipeline for its weights)"
    return model, Preprocess.from_data_config(config), described


def digits_train(directory: Path) -> Path:
    """The embedded default's training split, ingested exactly as data_ingestion does."""
    params = conf("data_ingestion")["data_ingestion"]
    ingest(
        load_source("digits"),
        params["image_size"],
        params["split"]["fractions"],
        params["split"]["seed"],
        directory,
    )
    return directory


def synthetic_train(directory: Path, num_images: int) -> Path:
    images, labels, _ = synthetic.generate(10, num_images, 32, seed=0)
    write_split(directory, "train", images, labels)
    return directory


def epoch_seconds(backbone: torch.nn.Module, shards: Path, preprocess: Preprocess) -> float:
    """Wall time of one VPT-deep training epoch (`visprompt.training.fit`, epochs=1)."""
    training = conf("training")["training"]
    run = training["runs"]["vpt_deep"]
    train = {**training["defaults"], **(run.get("train") or {})}
    train |= {
        "epochs": 1,
        "warmup_epochs": min(1, train.get("warmup_epochs", 0)),
        "patience": None,
        "progress": False,
    }
    dataset = ShardDataset(shards, "train")
    num_classes = int(dataset.labels.max()) + 1
    model = methods.build("vpt", copy.deepcopy(backbone), num_classes, **run["options"])
    result = fit(model, dataset, None, preprocess, TrainConfig.from_dict(train))
    return float(result.history[0]["epoch_time_s"])


def time_strategy(
    backbone: torch.nn.Module,
    stream: ShardStream,
    strategy: str,
    p: int,
    budget: int,
    device: str,
    streamed: bool = False,
) -> tuple[float, dict[str, Any]]:
    """Wall seconds of building one deep init (data loading and forward passes included)."""
    images = iter(stream) if streamed else stream  # a plain iterator has no random access
    start = time.perf_counter()
    out = build_prompt_inits(
        backbone,
        images,
        {strategy: InitConfig(strategy, p, "deep", seed=42)},
        memory_budget_bytes=budget,
        device=device,
        progress=False,
        lineage={"backbone_sha256": "benchmark"},
    )
    return time.perf_counter() - start, out[strategy].metadata


def bench(
    name: str,
    shards: Path,
    backbone: torch.nn.Module,
    preprocess: Preprocess,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    stream = ShardStream(shards, "train", preprocess, batch_size=256, device=args.device)
    print(f"[{name}] one VPT-deep epoch over {stream.num_images} images ...", flush=True)
    epoch = epoch_seconds(backbone, shards, preprocess)
    rows = []
    cases = [(s, False) for s in STRATEGIES] + [("random", True)]
    for strategy, streamed in cases:
        print(f"[{name}] {strategy}{' (streamed)' if streamed else ''} ...", flush=True)
        seconds, meta = time_strategy(
            backbone, stream, strategy, args.num_prompts, args.budget, args.device, streamed
        )
        ratio = seconds / epoch
        target = 1.0 if strategy == "kmeans" else 0.05
        kept = meta["layer_stats"]["0"].get("rows_kept", "") if strategy == "kmeans" else ""
        rows.append(
            {
                "data": name,
                "images": meta["images_used"],
                "tokens/layer": meta["tokens_per_layer"]["0"],
                "strategy": strategy + (" (streamed, no random access)" if streamed else ""),
                "images run": meta["images_forwarded"],
                "k-means sample/layer": kept,
                "seconds": f"{seconds:.3f}",
                "VPT-deep epoch s": f"{epoch:.2f}",
                "ratio to epoch": f"{ratio:.4f}",
                "target": f"<= {target:g}",
                "met": "yes" if ratio <= target else "NO",
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/spt_init.md"))
    parser.add_argument("--synthetic-images", type=int, default=10_000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    prompt_init = conf("prompt_init")["prompt_init"]
    args.budget = int(float(prompt_init["memory_budget_mb"]) * 2**20)
    args.num_prompts = conf("training")["training"]["runs"]["vpt_deep"]["options"]["num_prompts"]
    backbone, preprocess, described = project_backbone()
    rows = []
    with tempfile.TemporaryDirectory(prefix="spt_bench_") as tmp:
        rows += bench(
            "digits (embedded default)", digits_train(Path(tmp) / "d"), backbone, preprocess, args
        )
        shards = synthetic_train(Path(tmp) / "s", args.synthetic_images)
        rows += bench(f"synthetic {args.synthetic_images:,}", shards, backbone, preprocess, args)
    header = (
        f"SPT initialisation vs one VPT-deep epoch: {described}, D={backbone.embed_dim}, "
        f"{len(backbone.blocks)} blocks, {backbone.patch_embed.num_patches} patches, p="
        f"{args.num_prompts} deep, budget {args.budget / 2**20:g} MiB, device {args.device}, "
        f"{torch.get_num_threads()} torch threads, {platform.processor() or platform.machine()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
    )
    text = f"{header}\n\n{markdown(rows)}\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
