"""Benchmark: source val top-1 of the embedded ViT's local pretraining over several seeds.

Run: `nice .venv/bin/python benchmarks/pretrain_spread.py [--seeds 0 1 2] [--set lr=0.001 ...]
[--out benchmarks/results/pretrain_spread.md]`. Each seed sets both the data seed
(pretrain.seed: the synthetic images, or the idx source's train/val split) and the training
seed (initial weights, batch order); the recipe is the `vit` build's (parameters_backbone.yml:
`backbone.pretrain` with the entry's own `pretrain` over it) with `--set` overrides of its
`train` fields. The results file's earlier sections measured the shapes ViT (vit_tiny32).
The goal (issue #11): the spread (max - min) over 3 seeds within 3 points, so the
embedded default's numbers do not hinge on the machine's floating-point details.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from visprompt.weights import materialise
from visprompt.weights.sources import recipe

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "base"


def cpu_line() -> str:
    """CPU model, cores and torch's CPU capability: where the numbers were measured."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        model = names[0] if names else model
    cores = len(__import__("os").sched_getaffinity(0))
    return (
        f"{model}, {cores} cores, torch {torch.__version__} CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} torch threads"
    )


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`key=value` overrides of pretrain.train, values parsed as YAML."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = yaml.safe_load(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", nargs="*", default=[], help="pretrain.train overrides k=v")
    parser.add_argument("--label", default="configured recipe")
    parser.add_argument("--num-images", type=int, help="override pretrain.num_images (smoke)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/pretrain_spread.md")
    args = parser.parse_args()
    params = yaml.safe_load((CONF / "parameters_backbone.yml").read_text())["backbone"]
    engine = yaml.safe_load((CONF / "parameters_training.yml").read_text())["training_engine"]
    model = params["models"][params["build"]["vit"]]
    entry = {k: v for k, v in model.items() if k != "pretrain"} | {"weights": ["pretrain"]}
    base = recipe(params["pretrain"], model)
    base |= {"num_images": args.num_images} if args.num_images else {}
    train = base["train"] | parse_sets(args.set) | {"progress": False}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            settings = base | {"seed": seed, "train": train | {"seed": seed}}
            start = time.perf_counter()
            spec = materialise(
                f"vit{seed}", entry, settings, engine, Path(tmp) / "out", Path(tmp) / "ck"
            )
            stats = spec["pretrain"]
            rows.append(
                (
                    seed,
                    100 * stats["best_val_top1"],
                    stats["best_epoch"],
                    time.perf_counter() - start,
                )
            )
            print(
                f"seed {seed}: source val top-1 {rows[-1][1]:.1f} % "
                f"(best epoch {stats['best_epoch']}), {rows[-1][3]:.0f} s",
                flush=True,
            )
    tops = [r[1] for r in rows]
    settings_line = ", ".join(
        f"{k}={v}" for k, v in sorted(train.items()) if k not in ("progress", "seed")
    )
    source = (
        f"{base.get('objective', 'supervised')} on idx {base['root']}"
        if base.get("source") == "idx"
        else f"{base['num_images']} synthetic images, {base['num_classes']} classes"
    )
    lines = [
        f"### {args.label}",
        "",
        f"- {entry['name']} {entry.get('model_kwargs')}, {source}; train: {settings_line}",
        f"- machine: {cpu_line()}",
        "",
        "| seed | source val top-1 % | best epoch | wall s |",
        "|---:|---:|---:|---:|",
        *[f"| {s} | {t:.1f} | {e} | {w:.0f} |" for s, t, e, w in rows],
        "",
        f"mean {statistics.mean(tops):.1f} %, spread (max - min) {max(tops) - min(tops):.1f} "
        f"points over {len(tops)} seeds (goal <= 3).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
