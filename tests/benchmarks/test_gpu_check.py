"""`make gpu-check` (benchmarks/gpu_check.py) in its tiny CPU mode, so it cannot rot: the
shipped backbones load offline, every method steps under bf16 autocast and channels_last,
the loader's wait is measured, and the training engine trains through Fabric and DDP."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from visprompt.profiling import ProfileSettings
from visprompt.profiling.profile import random_images

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_check  # noqa: E402


def test_tiny_check_writes_every_section(tmp_path: Path) -> None:
    assert gpu_check.main(["--tiny", "--out-dir", str(tmp_path)]) == 0
    (report_path,) = tmp_path.glob("gpu_check_tiny_*.md")
    report = report_path.read_text()
    assert "- versions: torch " in report and "- machine: " in report
    assert "## cnn (lite0) at 32 px" in report and "## vit (" in report
    for method in ("linear_probe", "full_finetune", "lora", "vp", "adavipro", "vpt", "ap", "pgn"):
        assert f"| {method} " in report, method
    assert "bf16-mixed autocast, channels_last" in report
    backbones = len(re.findall(r"^## ", report, flags=re.M))  # cnn, vit and every shipped ViT
    assert backbones >= 2
    assert report.count("Data wait (ShardDataset + DataLoader over the digits shards") == backbones
    # the engine's settings (conf/gpu) and its DDP strategy, on one device
    assert report.count("| ap       | ddp ") == 1  # the CNN; VPT on each ViT (vit, vit_mae)
    assert report.count("| vpt      | ddp ") == backbones - 1
    assert "`vpt` skipped: method 'vpt' needs a VIT backbone" in report


@pytest.mark.skipif(torch.cuda.is_available(), reason="refuses only without CUDA")
def test_full_check_refuses_without_cuda(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert gpu_check.main(["--out-dir", str(tmp_path)]) == 2
    assert "--tiny" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_channels_last_reaches_the_measured_batches() -> None:
    settings = ProfileSettings(image_size=8, train_batch_size=2, channels_last=True, device="cpu")
    images = random_images(2, settings, torch.device("cpu"))
    assert images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
    plain = random_images(2, ProfileSettings(image_size=8, device="cpu"), torch.device("cpu"))
    assert plain.is_contiguous()
