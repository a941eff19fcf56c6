"""`make bench`: the efficiency table of every method on real-size backbones, from the shell.

    python benchmarks/efficiency.py --backbone vit_base_patch16_224 resnet50 \
        --image-size 224 --methods linear_probe vp vpt ap lora --out benchmarks/results/cpu.md

Random weights (no download): speed and memory do not depend on the weight values. Runs on
the GPU when one is present (`--device`). Writes a Markdown report (machine, settings, one
table per backbone, the targets of issue 7 met or not, the VPT prompt-length curve), a CSV of
every row next to it, and the curve's plot.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from vpt_curve import VPT_LITERATURE_MACS, prompt_length_curve  # benchmarks/ is sys.path[0]

from visprompt import backbones, methods
from visprompt.atomic import write_text
from visprompt.data.shards import ShardDataset, write_split
from visprompt.methods.norm_tuning import NORM_TYPES
from visprompt.profiling.dataload import DataWait, training_data_wait
from visprompt.profiling.flops import backward_cost
from visprompt.profiling.machine import describe_machine
from visprompt.profiling.profile import REFERENCE, ProfileSettings, profile_models, random_images
from visprompt.profiling.report import plot_curve, to_markdown
from visprompt.profiling.steps import make_infer_step
from visprompt.profiling.timing import resolve_device, time_call
from visprompt.progress import progress_bar
from visprompt.training import Preprocess, TrainConfig, fit

DEFAULT_BACKBONES = ("vit_base_patch16_224", "resnet50")
DEFAULT_METHODS = (
    "linear_probe", "full_finetune", "norm_tuning", "bias_tuning", "lora",
    "vp", "adavipro", "vpt", "ap", "pgn",
)  # fmt: skip

#: Options per method; `ap` picks its layer by backbone family, pad prompts scale with S.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "vp": {"design": "pad"},
    "vpt": {"variant": "deep", "num_prompts": 10},
    "lora": {"rank": 8},
}
PAD_AT_224 = 30  # VP / AdaViPro pad width at 224 px (Bahng et al.; Yang et al.)
AP_VIT_LAYER = "blocks.2"  # the AP paper: ViTs prefer early blocks, CNNs their deepest stage
TARGETS = {
    "ap_throughput_ratio": 0.98,
    "ap_vs_vp_train_step": 0.65,
    "cached_epoch": 0.25,
    "data_wait_fraction": 0.05,
    "deployed_throughput_ratio": 0.98,
}


def method_options(method: str, backbone: nn.Module, image_size: int) -> dict[str, Any]:
    """Bench options of `method` for this backbone; methods taking `image_size` get it."""
    options = dict(DEFAULT_OPTIONS.get(method, {}))
    if "image_size" in methods.config_class(method).model_fields:
        options["image_size"] = image_size
    if method in ("vp", "adavipro"):
        options["prompt_size"] = max(1, round(PAD_AT_224 * image_size / 224))
    if method == "ap":
        vit = backbones.family(backbone) == "vit"
        options["layer"] = AP_VIT_LAYER if vit else backbones.stage_points(backbone)[-1]
    return options


def make_backbone(name: str, image_size: int) -> nn.Module:
    """A randomly initialised, frozen timm backbone; ViTs are built for `image_size`."""
    model = backbones.create_backbone(name)
    if backbones.family(model) == "vit" and backbones.image_size(model) != image_size:
        model = backbones.create_backbone(name, img_size=image_size)
    return backbones.freeze(model)


def build_models(
    backbone: nn.Module, names: Sequence[str], image_size: int, num_classes: int
) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """{name: model} with the bare backbone first, and {method: why it was skipped}."""
    models: dict[str, nn.Module] = {REFERENCE: backbone}
    skipped: dict[str, str] = {}
    for name in names:
        if name not in methods.available():
            skipped[name] = "not implemented yet (not in methods.available())"
            continue
        options = method_options(name, backbone, image_size)
        try:
            models[name] = methods.build(name, copy.deepcopy(backbone), num_classes, **options)
        except ValueError as err:  # a method that does not apply to this family
            skipped[name] = str(err).splitlines()[0]
    return models, skipped


def model_preprocess(backbone: nn.Module, image_size: int) -> Preprocess:
    """uint8 batch -> the backbone's normalisation at the bench's image size."""
    config = backbones.data_config(backbone)
    return Preprocess(image_size, tuple(config["mean"]), tuple(config["std"]))


def ap_vs_vp(
    models: dict[str, nn.Module], rows: list[dict[str, Any]], settings: ProfileSettings
) -> dict[str, Any] | None:
    """AP's training step against VP's: measured time ratio and the structural reasons."""
    if not {"ap", "vp"} <= set(models):
        return None
    step = {r["method"]: r["train_step_ms"] for r in rows}
    device = resolve_device(settings.device)
    images = random_images(settings.train_batch_size, settings, device)
    labels = torch.zeros(len(images), dtype=torch.long, device=device)
    cost = {m: backward_cost(models[m].train(), images, labels) for m in ("ap", "vp")}
    return {
        "train_step_ratio": step["ap"] / step["vp"],
        "backward_flops_ratio": cost["ap"].backward_flops / cost["vp"].backward_flops,
        "saved_bytes_ratio": cost["ap"].saved_bytes / cost["vp"].saved_bytes,
        "graph_nodes": (cost["ap"].graph_nodes, cost["vp"].graph_nodes),
    }


def data_wait(
    model: nn.Module, settings: ProfileSettings, batches: int, num_workers: int
) -> DataWait:
    """Wait fraction of a real ShardDataset + DataLoader feeding `model`'s training step.

    The shard holds random uint8 images at the bench's image size; the step includes the
    on-device preprocessing (to_model_input), as the training loop does.
    """
    device = resolve_device(settings.device)
    n = settings.train_batch_size * (batches + 1)
    rng = np.random.default_rng(settings.seed)
    size = settings.image_size
    with tempfile.TemporaryDirectory() as tmp:
        images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        write_split(tmp, "train", images, rng.integers(0, 10, n))
        return training_data_wait(
            model,
            ShardDataset(tmp, "train"),
            model_preprocess(model.backbone, size),
            settings.train_batch_size,
            num_workers,
            device,
            batches,
        )


def cached_epochs(
    backbone: nn.Module, settings: ProfileSettings, images: int, num_classes: int
) -> dict[str, Any]:
    """Epoch time of AP at the last CNN stage with its prefix cached vs VP, trained for real.

    Both train 2 epochs with `visprompt.training.fit` (`cache_prefix=True`, no augmentation)
    on a temporary shard of `images` random images. The cache is built before the first
    epoch, so the epoch times are the suffix only; `fit_wall_ratio` includes building it.
    """
    device = resolve_device(settings.device)
    size = settings.image_size
    preprocess = model_preprocess(backbone, size)
    config = TrainConfig(
        epochs=2, batch_size=settings.train_batch_size, optimizer="sgd", lr=0.01,
        cache_prefix=True, progress=False, accelerator=device.type, seed=settings.seed,
    )  # fmt: skip
    rng = np.random.default_rng(settings.seed)
    epoch, wall, results = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        pixels = rng.integers(0, 256, (images, size, size, 3), dtype=np.uint8)
        write_split(tmp, "train", pixels, rng.integers(0, num_classes, images))
        for name in ("ap", "vp"):
            options = method_options(name, backbone, size)
            model = methods.build(name, copy.deepcopy(backbone), num_classes, **options)
            start = time.perf_counter()
            results[name] = fit(model, ShardDataset(tmp, "train"), None, preprocess, config)
            wall[name] = time.perf_counter() - start
            epoch[name] = float(np.mean([r["epoch_time_s"] for r in results[name].history]))
    return {
        "cached_epoch_ratio": epoch["ap"] / epoch["vp"],
        "fit_wall_ratio": wall["ap"] / wall["vp"],
        "ap_cache": results["ap"].cache.get("train", "off"),
        "epoch_s": epoch,
    }


def fold_layer(backbone: nn.Module, image_size: int) -> str:
    """The first normalisation layer inside AP's bench layer: where a channel δ folds."""
    layer = method_options("ap", backbone, image_size)["layer"]
    for name, module in backbone.get_submodule(layer).named_modules():
        if name and isinstance(module, NORM_TYPES):
            return f"{layer}.{name}"
    raise ValueError(f"no normalisation layer inside '{layer}' to fold an AP channel δ into")


def deployment_throughput(
    backbone: nn.Module, settings: ProfileSettings, num_classes: int, repeats: int
) -> list[dict[str, Any]]:
    """Inference throughput of LoRA and AP-channel-on-a-norm, trained form and served form
    (`AdaptedModel.served`: merged / folded), against the bare backbone.

    After warm-up, every round times each model right next to a backbone call (pair order
    alternating between rounds, model order rotating), so load that changes on a shared
    machine hits both calls of a pair alike; a pair's throughput ratio is the backbone's
    time over the model's. Rows give the median ratio over rounds and its spread.
    """
    size = settings.image_size
    norm = fold_layer(backbone, size)
    lora = methods.build(
        "lora", copy.deepcopy(backbone), num_classes, **method_options("lora", backbone, size)
    )
    ap = methods.build(
        "ap", copy.deepcopy(backbone), num_classes, layer=norm, granularity="channel",
        image_size=size,
    )  # fmt: skip
    served = {"lora merged": lora.served(), "ap folded": ap.served()}
    if served["lora merged"] is lora or served["ap folded"] is ap:
        raise RuntimeError("lora or ap did not fold into the backbone (served returned it)")
    models = {REFERENCE: backbone, "lora": lora, "lora merged": served["lora merged"],
              f"ap channel on {norm}": ap, "ap folded": served["ap folded"]}  # fmt: skip
    device = resolve_device(settings.device)
    batch = random_images(settings.infer_batch_size, settings, device)
    steps = {name: make_infer_step(m.to(device).eval(), batch) for name, m in models.items()}
    for step in steps.values():
        for _ in range(settings.warmup):
            step()
    others = [name for name in models if name != REFERENCE]
    times: dict[str, list[float]] = {name: [] for name in models}
    ratios: dict[str, list[float]] = {name: [] for name in others}
    for r in progress_bar(range(repeats), desc="served forms", disable=not settings.progress):
        for name in others[r % len(others) :] + others[: r % len(others)]:
            pair = (REFERENCE, name) if r % 2 == 0 else (name, REFERENCE)
            took = {n: time_call(steps[n], device) for n in pair}
            ratios[name].append(took[REFERENCE] / took[name])
            for n, seconds in took.items():
                times[n].append(seconds)
    rows = []
    for name, seconds in times.items():
        ratio = np.asarray(ratios.get(name, [1.0]))
        q25, q75 = np.percentile(ratio, [25, 75])
        rows.append({
            "model": name,
            "throughput_ips": len(batch) / float(np.median(seconds)),
            "throughput_ratio": float(np.median(ratio)),
            "ratio_q25": float(q25), "ratio_q75": float(q75),
            "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max()),
            "rounds": repeats,
        })  # fmt: skip
    return rows


def targets_table(
    tables: dict[str, list[dict[str, Any]]],
    ap_vp: dict[str, dict[str, Any]],
    curve: list[dict[str, Any]],
    wait: DataWait | None,
    deployed: dict[str, list[dict[str, Any]]],
) -> pd.DataFrame:
    """Every target of issues 7 and 13 with its measured value, bound and verdict ("info":
    no bound)."""
    checks: list[tuple[str, float, str, float | None]] = []
    for bb, rows in deployed.items():
        for row in (r for r in rows if r["model"] in ("lora merged", "ap folded")):
            name = f"{bb}: {row['model']} throughput / backbone (served form)"
            bound = TARGETS["deployed_throughput_ratio"]
            checks.append((name, row["throughput_ratio"], ">=", bound))
    for bb, table in tables.items():
        for row in (r for r in table if r["method"] == "ap"):
            checks.append((f"{bb}: AP throughput / backbone", row["throughput_ratio"], ">=",
                           TARGETS["ap_throughput_ratio"]))  # fmt: skip
    for bb, cmp in ap_vp.items():
        checks += [
            (f"{bb}: AP train step / VP train step (no caching)", cmp["train_step_ratio"], "<=",
             TARGETS["ap_vs_vp_train_step"]),
            (f"{bb}: AP backward FLOPs / VP backward FLOPs", cmp["backward_flops_ratio"], "info",
             None),
            (f"{bb}: AP saved activations / VP saved activations", cmp["saved_bytes_ratio"],
             "info", None),
        ]  # fmt: skip
        if "cached_epoch_ratio" in cmp:
            checks += [
                (f"{bb}: AP epoch with prefix cache / VP epoch", cmp["cached_epoch_ratio"], "<=",
                 TARGETS["cached_epoch"]),
                (f"{bb}: AP 2-epoch fit incl. cache build / VP", cmp["fit_wall_ratio"], "info",
                 None),
            ]  # fmt: skip
    for row in (r for r in curve if r["num_prompts"] in VPT_LITERATURE_MACS):
        p, literature = row["num_prompts"], row["literature_macs_ratio"]
        name = f"VPT p={p}: FLOPs / p=0 (literature: MACs x{literature})"
        checks.append((name, row["gflops_ratio"], "info", None))
    if wait is not None:
        checks.append(("data wait / step time (ShardDataset + DataLoader)", wait.fraction, "<=",
                       TARGETS["data_wait_fraction"]))  # fmt: skip
    return pd.DataFrame([_target(*check) for check in checks])


def _target(name: str, value: float, op: str, threshold: float | None) -> dict[str, Any]:
    met = {"<=": value <= (threshold or 0), ">=": value >= (threshold or 0)}.get(op)
    verdict = "-" if met is None else ("met" if met else "NOT met")
    bound = "-" if threshold is None else f"{op} {threshold}"
    return {"target": name, "measured": float(value), "bound": bound, "verdict": verdict}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/efficiency.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--backbone",
        nargs="+",
        default=list(DEFAULT_BACKBONES),
        help="timm model names (random weights)",
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=2, help="training-step batch")
    parser.add_argument("--infer-batch-size", type=int, default=2, help="throughput batch")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--latency-repeats", type=int, default=3)
    parser.add_argument(
        "--vpt-prompts",
        type=int,
        nargs="*",
        default=[0, 10, 20, 50, 100],
        help="prompt counts of the VPT cost curve (empty: no curve)",
    )
    parser.add_argument("--data-wait-batches", type=int, default=5)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument(
        "--cache-images",
        type=int,
        default=8,
        help="images of the AP-with-prefix-cache vs VP epoch test (0: skip)",
    )
    parser.add_argument(
        "--deploy-repeats",
        type=int,
        default=5,
        help="interleaved rounds of the served-form throughput (merged LoRA, folded AP; 0: skip)",
    )
    parser.add_argument(
        "--deploy-only", action="store_true", help="measure only the served-form throughput"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 ...")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench.md"))
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = ProfileSettings(
        image_size=args.image_size, train_batch_size=args.batch_size,
        infer_batch_size=args.infer_batch_size, warmup=args.warmup, repeats=args.repeats,
        latency_repeats=args.latency_repeats, device=args.device, progress=not args.no_progress,
    )  # fmt: skip
    device = resolve_device(args.device)
    start = time.perf_counter()
    tables: dict[str, list[dict[str, Any]]] = {}
    ap_vp: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    curve: list[dict[str, Any]] = []
    wait: DataWait | None = None
    deployed: dict[str, list[dict[str, Any]]] = {}
    for name in args.backbone:
        backbone = make_backbone(name, args.image_size)
        if args.deploy_repeats or args.deploy_only:
            print(f"== {name}: served forms", file=sys.stderr)
            repeats = args.deploy_repeats or 5
            deployed[name] = deployment_throughput(backbone, settings, args.num_classes, repeats)
        if args.deploy_only:
            continue
        models, skipped = build_models(backbone, args.methods, args.image_size, args.num_classes)
        notes += [f"{name}: skipped `{m}`: {why}" for m, why in skipped.items()]
        print(f"== {name}: {', '.join(models)}", file=sys.stderr)
        tables[name] = profile_models(models, settings)
        cmp = ap_vs_vp(models, tables[name], settings)
        if backbones.family(backbone) == "cnn" and cmp is not None:
            if args.cache_images:
                cmp |= cached_epochs(backbone, settings, args.cache_images, args.num_classes)
            ap_vp[name] = cmp
        if wait is None and "linear_probe" in models:
            wait = data_wait(
                models["linear_probe"], settings, args.data_wait_batches, args.num_workers
            )
        if backbones.family(backbone) == "vit" and args.vpt_prompts and not curve:
            if "vpt" in methods.available():
                options = {k: v for k, v in DEFAULT_OPTIONS["vpt"].items() if k != "num_prompts"}
                curve = prompt_length_curve(
                    backbone, args.vpt_prompts, settings, args.num_classes, options=options
                )
            else:
                notes.append("VPT prompt-length curve skipped: `vpt` is not implemented yet")
        del models
    notes.append(f"wall time of the whole bench: {time.perf_counter() - start:.0f} s")
    report = write_report(args, settings, device, tables, ap_vp, curve, wait, deployed, notes)
    print(report)
    return 0


def write_report(
    args: argparse.Namespace,
    settings: ProfileSettings,
    device: torch.device,
    tables: dict[str, list[dict[str, Any]]],
    ap_vp: dict[str, dict[str, Any]],
    curve: list[dict[str, Any]],
    wait: DataWait | None,
    deployed: dict[str, list[dict[str, Any]]],
    notes: list[str],
) -> str:
    """Write the Markdown report, the CSV of all rows and the curve plot; return the report."""
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# visprompt efficiency benchmark",
        "",
        f"- machine: {describe_machine(device)}",
        f"- command: `python benchmarks/efficiency.py {' '.join(sys.argv[1:])}`",
        f"- image size {settings.image_size}; training-step batch {settings.train_batch_size}; "
        f"throughput batch {settings.infer_batch_size}; latency batch 1; warm-up "
        f"{settings.warmup}, {settings.repeats} timed repeats (medians; latency "
        f"{settings.latency_repeats} calls); random weights, {args.num_classes} classes",
        "- `backbone` is the bare frozen backbone: its training step is a no-grad forward at "
        "the training batch (the floor); every `*_ratio` is relative to it, measured in the "
        "same run. GFLOPs per image count a multiply-add as 2 FLOPs.",
        "",
    ]
    frames = []
    for name, rows in tables.items():
        frame = pd.DataFrame(rows)
        lines += [f"## {name}", "", to_markdown(frame)]
        frames.append(frame.assign(backbone=name))
    if deployed:
        lines += [
            "## Served forms: merged LoRA, folded AP (inference throughput vs the backbone)",
            "",
            f"Inference at batch {settings.infer_batch_size}, "
            f"{next(iter(deployed.values()))[0]['rounds']} rounds after {settings.warmup} "
            "warm-up call(s); in every round each model is timed right next to a backbone "
            "call (order alternating), `throughput_ratio` is the median over rounds of "
            "backbone time / model time within the pair, `ratio_q25`..`ratio_max` its "
            "spread. AP: channel granularity on the first norm layer of its bench layer.",
            "",
        ]
        for name, rows in deployed.items():
            lines += [f"### {name}", "", to_markdown(pd.DataFrame(rows)), ""]
    lines += [
        "## Targets (issues 7, 13), measured as ratios in this run",
        "",
        to_markdown(targets_table(tables, ap_vp, curve, wait, deployed)),
    ]
    for name, cmp in ap_vp.items():
        nodes = cmp["graph_nodes"]
        lines.append(f"- {name}: autograd nodes reached by the loss: AP {nodes[0]}, VP {nodes[1]}")
        if "epoch_s" in cmp:
            ep = cmp["epoch_s"]
            lines.append(
                f"- {name}: 2-epoch fit on {args.cache_images} images, mean epoch AP "
                f"{ep['ap']:.2f} s (prefix cache: {cmp['ap_cache']}) vs VP {ep['vp']:.2f} s"
            )
    if curve:
        frame = pd.DataFrame(curve)
        plot = out.with_name(out.stem + "_vpt_curve.png")
        fig = plot_curve(
            frame,
            "num_prompts",
            ["gflops_ratio", "train_step_ratio"],
            title=f"VPT cost vs prompt length ({args.backbone[0]})",
            reference=[(p, r, "literature") for p, r in VPT_LITERATURE_MACS.items()],
        )
        fig.savefig(plot, dpi=120)
        lines += [
            "",
            "## VPT cost vs prompt length p (deep; p = 0 is the linear probe)",
            "",
            to_markdown(frame),
            f"![VPT cost curve]({plot.name})",
        ]
    if wait is not None:
        lines += [
            "",
            f"- data wait: {wait.wait_s:.3f} s waiting vs {wait.compute_s:.3f} s "
            f"computing over {wait.batches} batches (num_workers={args.num_workers})",
        ]
    lines += [""] + [f"- note: {n}" for n in notes]
    report = "\n".join(lines) + "\n"
    write_text(out, report)
    if frames:
        pd.concat(frames).to_csv(out.with_suffix(".csv"), index=False)
    return report


if __name__ == "__main__":
    raise SystemExit(main())
