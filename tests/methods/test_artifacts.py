"""Method artifacts: the backbone they were trained on is recorded and checked; saves are
atomic and idempotent, and a folder left by a killed save never blocks the next one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from tiny import TINY_BACKBONES, make_backbone

from visprompt import methods
from visprompt.backbones import create_backbone, tensors_sha256

C = 4


def test_save_records_the_backbone_reference(tmp_path: Path) -> None:
    name, kwargs = TINY_BACKBONES["vit"]
    torch.manual_seed(0)
    backbone = create_backbone(name, **kwargs)
    model = methods.build("linear_probe", backbone, C)
    config = json.loads((methods.save(model, tmp_path / "a") / "config.json").read_text())
    assert config["backbone"] == {
        "name": name,
        "model_kwargs": kwargs,
        "sha256": tensors_sha256(backbone.state_dict().items()),
    }


def test_load_refuses_another_backbone_naming_both(tmp_path: Path) -> None:
    methods.save(methods.build("linear_probe", make_backbone("vit", seed=0), C), tmp_path / "a")
    with pytest.raises(ValueError) as err:
        methods.load(tmp_path / "a", make_backbone("vit", seed=1))  # same name, other weights
    message = str(err.value)
    assert "config.json" in message and message.count("vit_tiny_patch16_224") == 2
    assert tensors_sha256(make_backbone("vit", seed=1).state_dict().items())[:12] in message
    with pytest.raises(ValueError, match="'resnet18'"):
        methods.load(tmp_path / "a", make_backbone("resnet"))
    methods.load(tmp_path / "a", make_backbone("vit", seed=0))  # the right one loads


def test_full_finetune_records_the_backbone_before_training(tmp_path: Path) -> None:
    model = methods.build("full_finetune", make_backbone("resnet"), C)
    with torch.no_grad():
        model.backbone.conv1.weight.add_(1.0)  # as training would
    methods.save(model, tmp_path / "a")
    restored = methods.load(tmp_path / "a", make_backbone("resnet"))
    assert torch.equal(restored.backbone.conv1.weight, model.backbone.conv1.weight)


def test_save_is_idempotent_and_cleans_a_killed_saves_leftovers(tmp_path: Path) -> None:
    model = methods.build("linear_probe", make_backbone("resnet"), C)
    target = tmp_path / "run"
    methods.save(model, target)
    first = {p.name: p.read_bytes() for p in target.iterdir()}
    # what a save SIGKILLed by another (now dead) process leaves: both kinds of sibling
    for kind in ("tmp", "old"):
        leftover = tmp_path / f".run.{kind}-999999999"
        leftover.mkdir()
        (leftover / "config.json").write_text("{half")
    methods.save(model, target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == first
    assert sorted(os.listdir(tmp_path)) == ["run"]
