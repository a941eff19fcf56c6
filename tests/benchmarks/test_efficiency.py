"""`make bench` (benchmarks/efficiency.py) end to end on a small real timm model at 32 px."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from visprompt import methods
from visprompt.backbones import freeze
from visprompt.profiling import ProfileSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import efficiency as bench  # noqa: E402
from vpt_curve import prompt_length_curve  # noqa: E402


def test_bench_writes_tables_targets_and_notes(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    code = bench.main([
        "--backbone", "resnet18", "--image-size", "32",
        "--methods", "linear_probe", "vp", "ap", "vpt", "no_such_method",
        "--batch-size", "2", "--infer-batch-size", "2", "--repeats", "1",
        "--latency-repeats", "2", "--vpt-prompts", "--cache-images", "4",
        "--data-wait-batches", "1", "--device", "cpu", "--no-progress", "--out", str(out),
        "--deploy-repeats", "2",
    ])  # fmt: skip
    assert code == 0
    report = out.read_text()
    assert "machine: " in report and "## resnet18" in report
    for target in (
        "AP throughput / backbone",
        "AP train step / VP train step",
        "AP epoch with prefix cache / VP epoch",
        "data wait / step time",
        "resnet18: lora merged throughput / backbone (served form)",
        "resnet18: ap folded throughput / backbone (served form)",
    ):
        assert target in report, target
    assert "prefix cache: built" in report
    assert "skipped `no_such_method`: not implemented yet" in report
    assert "skipped `vpt`: method 'vpt' needs a VIT backbone" in report
    rows = pd.read_csv(out.with_suffix(".csv")).set_index("method")
    assert list(rows.index) == ["backbone", "linear_probe", "vp", "ap"]
    assert rows.at["linear_probe", "trainable_params"] == 512 * 10 + 10
    pad = 4  # 30 px at 224 scaled to 32 px: 12*p*(S-p) prompt parameters + head
    assert rows.at["vp", "trainable_params"] == 12 * pad * (32 - pad) + 512 * 10 + 10


def test_method_options_follow_the_backbone_and_image_size(
    tiny_resnet: torch.nn.Module, tiny_vit: torch.nn.Module
) -> None:
    resnet, vit = tiny_resnet, tiny_vit
    assert bench.method_options("ap", resnet, 224) == {"layer": "layer4", "image_size": 224}
    assert bench.method_options("ap", vit, 32)["layer"] == "blocks.2"
    assert bench.method_options("vp", vit, 224)["prompt_size"] == 30
    assert bench.fold_layer(resnet, 224) == "layer4.0.bn1"  # AP's channel δ folds into its β
    assert bench.fold_layer(vit, 32) == "blocks.2.norm1"


def test_vpt_prompt_length_curve_grows_with_the_sequence(tiny_vit: torch.nn.Module) -> None:
    backbone = freeze(tiny_vit)  # 64 patches + CLS at 32 px
    settings = ProfileSettings(image_size=32, train_batch_size=2, warmup=0, repeats=1,
                               device="cpu", progress=False)  # fmt: skip
    curve = prompt_length_curve(backbone, [0, 8, 32], settings, options={"variant": "deep"})
    rows = {r["num_prompts"]: r for r in curve}
    assert rows[0]["gflops_ratio"] == 1.0
    assert 1.0 < rows[8]["gflops_ratio"] < rows[32]["gflops_ratio"]
    # deep VPT: depth (4) x p x D (64) prompt parameters on top of the probe's head
    assert rows[8]["trainable_params"] - rows[0]["trainable_params"] == 4 * 8 * 64
    with pytest.raises(ValueError, match="must include 0"):
        prompt_length_curve(copy.deepcopy(backbone), [8], settings)
    assert "vpt" in methods.available()
