"""Parameter groups: method tensors and the new head get their own lr and weight decay."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from methods.cases import NUM_CLASSES, matrix
from tiny import make_backbone

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import ColourImages  # noqa: E402

from visprompt import methods  # noqa: E402
from visprompt.training import Preprocess, TrainConfig, fit  # noqa: E402
from visprompt.training.param_groups import optimizer_groups  # noqa: E402

CONFIG = dict(lr=40.0, weight_decay=0.1, head_lr=0.01, head_weight_decay=0.001)
ONE_PER_METHOD = {case.id: (case, kind) for case, kind in matrix()}  # last backbone per case


@pytest.mark.parametrize(("case", "kind"), ONE_PER_METHOD.values(), ids=ONE_PER_METHOD)
def test_groups_partition_the_trainable_parameters(case, kind) -> None:
    model = methods.build(case.method, make_backbone(kind), NUM_CLASSES, **case.options_for(kind))
    groups = optimizer_groups(model, TrainConfig(**CONFIG))
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in model.trainable_parameters()}
    assert len(ids) == len(set(ids)) and set(ids) == trainable  # each exactly once
    head = {id(p) for p in model.head.parameters()}
    in_head = {id(p) for g in groups if g["name"].startswith("head") for p in g["params"]}
    assert in_head == head
    for group in groups:
        if group["name"].startswith("head"):
            assert group["lr"] == 0.01
        else:  # AdaViPro keeps its generator scale in a second method group
            scale = getattr(model.method_config, "generator_lr_scale", 1.0)
            assert group["lr"] in (40.0, 40.0 * scale)
        no_decay = "no_decay" in group["name"]
        expected = 0.0 if no_decay else (0.001 if group["name"] == "head" else 0.1)
        assert group["weight_decay"] == expected, group["name"]


def test_biases_norms_and_tokens_are_not_decayed_by_default() -> None:
    model = methods.build("full_finetune", make_backbone("vit"), NUM_CLASSES)
    groups = {g["name"]: g for g in optimizer_groups(model, TrainConfig(weight_decay=0.05))}
    assert set(groups) == {"method", "method_no_decay", "head", "head_no_decay"}
    names = {id(p): n for n, p in model.named_parameters()}
    exempt = {names[id(p)] for p in groups["method_no_decay"]["params"]}
    expected = {
        n
        for n, p in model.backbone.named_parameters()
        if p.requires_grad
        and (n.endswith(".bias") or ".norm" in n or n.startswith("norm") or "." not in n)
    }
    assert exempt == {f"backbone.{n}" for n in expected}
    assert {"backbone.cls_token", "backbone.pos_embed"} <= exempt
    assert {names[id(p)] for p in groups["head_no_decay"]["params"]} == {"head.bias"}
    assert groups["method"]["weight_decay"] == 0.05 and groups["head"]["weight_decay"] == 0.05

    # configurable per run: decay everything
    everything = optimizer_groups(model, TrainConfig(weight_decay=0.05, no_weight_decay=[]))
    assert [g["name"] for g in everything] == ["method", "head"]
    assert all(g["weight_decay"] == 0.05 for g in everything)


def test_prompt_tensors_count_as_prompt_kind() -> None:
    vpt = methods.build("vpt", make_backbone("vit"), NUM_CLASSES, variant="deep", num_prompts=2)
    config = TrainConfig(weight_decay=0.1, no_weight_decay=["prompt"])
    groups = {g["name"]: g for g in optimizer_groups(vpt, config)}
    prompts = sum(p.numel() for p in groups["method_no_decay"]["params"])
    assert prompts == len(vpt.backbone.blocks) * 2 * vpt.backbone.embed_dim
    assert "method" not in groups  # VPT trains only its prompts (and the head)


def test_vp_prompt_lr_does_not_reach_the_head() -> None:
    """One SGD epoch at lr 40 on the prompt: the head moves only as far as its own lr allows."""
    torch.manual_seed(0)
    model = methods.build(
        "vp", make_backbone("vit"), 4, design="pad", prompt_size=4, image_size=32, output="head"
    )
    head_before = model.head.weight.detach().clone()
    prompt_before = [p.detach().clone() for p in model.prompt.parameters()]
    config = TrainConfig(
        epochs=1, batch_size=8, optimizer="sgd", momentum=0.0, lr=40.0, head_lr=1e-6,
        progress=False,
    )  # fmt: skip
    fit(model, ColourImages(8), None, Preprocess(32, (0.5,) * 3, (0.5,) * 3), config)
    head_step = (model.head.weight - head_before).abs().max().item()
    prompt_step = max(
        (p - b).abs().max().item()
        for p, b in zip(model.prompt.parameters(), prompt_before, strict=True)
    )
    assert 0 < head_step < 1e-5
    assert prompt_step > 1e-2


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"head_lr": 0.0}, "head_lr"),
        ({"head_weight_decay": -1.0}, "head_weight_decay"),
        ({"no_weight_decay": ["bias", "gamma"]}, "no_weight_decay"),
    ],
)
def test_bad_group_options_name_the_field(options: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"TrainConfig\n{field}\b"):
        TrainConfig(**options)
