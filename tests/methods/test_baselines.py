"""Baselines: what each one trains, BatchNorm statistics, the linear probe's cached split."""

from __future__ import annotations

import pytest
import torch
from tiny import make_backbone

from visprompt import methods
from visprompt.backbones import pooled_features
from visprompt.methods.norm_tuning import NORM_TYPES

C = 5


def bn_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.clone() for n, b in model.named_buffers() if "running" in n}


def steps(model: methods.AdaptedModel, images: torch.Tensor, n: int = 2) -> None:
    labels = torch.arange(images.shape[0]) % C
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    model.train()
    for _ in range(n):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        opt.step()


def test_available_lists_every_method_of_this_part() -> None:
    mine = {"linear_probe", "full_finetune", "norm_tuning", "bias_tuning", "lora", "ap"}
    assert mine <= set(methods.available())


def test_linear_probe_split_caches_pooled_features(images: torch.Tensor) -> None:
    model = methods.build("linear_probe", make_backbone("resnet"), C).eval()
    prefix, suffix = model.split_for_cache()
    assert suffix is model.head
    assert torch.equal(prefix(images), pooled_features(make_backbone("resnet"), images))
    prefix.train()  # the prefix does not own the backbone: its mode cannot leak
    assert not model.backbone.training


def test_full_finetune_trains_the_backbone_in_train_mode(images: torch.Tensor) -> None:
    model = methods.build("full_finetune", make_backbone("resnet"), C)
    before = bn_buffers(model.backbone)
    steps(model, images)
    assert model.backbone.training
    after = bn_buffers(model.backbone)
    assert any(not torch.equal(before[n], after[n]) for n in before)  # statistics update
    assert not any(p.requires_grad for p in model.backbone.fc.parameters())  # unused source head
    assert torch.equal(model.backbone.fc.weight, make_backbone("resnet").fc.weight)


@pytest.mark.parametrize("kind", ["resnet", "vit", "convnext"])
def test_norm_tuning_trains_only_norm_affines_and_keeps_bn_statistics(
    kind: str, images: torch.Tensor
) -> None:
    model = methods.build("norm_tuning", make_backbone(kind), C)
    modules = dict(model.named_modules())
    for name, _ in model.named_trainable_parameters():
        owner, leaf = name.rsplit(".", 1)
        assert owner == "head" or (
            isinstance(modules[owner], NORM_TYPES) and leaf in ("weight", "bias")
        )
    before = bn_buffers(model.backbone)
    steps(model, images)
    assert all(torch.equal(before[n], b) for n, b in bn_buffers(model.backbone).items())
    assert not any(m.training for m in model.backbone.modules())


@pytest.mark.parametrize("kind", ["resnet", "vit", "convnext"])
def test_bias_tuning_trains_only_biases(kind: str) -> None:
    model = methods.build("bias_tuning", make_backbone(kind), C)
    names = [n for n, _ in model.named_trainable_parameters()]
    assert all(n.startswith("head.") or n.endswith("bias") for n in names)
    classifier = {id(p) for p in model.backbone.get_classifier().parameters()}
    assert not any(id(p) in classifier for p in model.trainable_parameters())
    frozen_biases = [
        n
        for n, p in model.backbone.named_parameters()
        if n.endswith("bias") and not p.requires_grad and id(p) not in classifier
    ]
    assert frozen_biases == []


def test_norm_tuning_on_batchnorm_counts_two_per_channel() -> None:
    """ResNet-18 layout (stem 64, stages 16/32/64/128, two blocks, downsample everywhere):
    BN channels = 64 + 5·(16+32+64+128) = 1264, so 2528 affine parameters + head."""
    model = methods.build("norm_tuning", make_backbone("resnet"), C)
    assert methods.count_parameters(model)["trainable"] == 2528 + 128 * C + C


def test_building_on_a_shared_backbone_never_changes_an_earlier_model(images: torch.Tensor) -> None:
    backbone = make_backbone("resnet")
    flags = [p.requires_grad for p in backbone.parameters()]
    probe = methods.build("linear_probe", backbone, C)
    probe_counts = methods.count_parameters(probe)
    assert probe_counts["trainable"] == 128 * C + C  # D·C + C
    bitfit = methods.build("bias_tuning", backbone, C)
    steps(bitfit, images)
    assert methods.count_parameters(probe) == probe_counts
    assert [p.requires_grad for p in backbone.parameters()] == flags  # caller's flags kept
    # the probe's frozen features are still the untouched backbone's
    reference = pooled_features(make_backbone("resnet"), images)
    assert torch.equal(pooled_features(probe.backbone, images), reference)
    assert not torch.equal(pooled_features(bitfit.backbone, images), reference)
    # frozen tensors are shared with the caller (no copy), trained ones are the model's own
    assert probe.backbone.conv1.weight.data_ptr() == backbone.conv1.weight.data_ptr()
    assert bitfit.backbone.bn1.bias.data_ptr() != backbone.bn1.bias.data_ptr()
