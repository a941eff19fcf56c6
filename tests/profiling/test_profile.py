"""profile_models and its parts on tiny real timm backbones (no wall-clock targets)."""

from __future__ import annotations

import copy

import pytest
import torch

from visprompt import methods
from visprompt.backbones import freeze
from visprompt.profiling import COLUMNS, ProfileSettings, forward_flops, profile_models
from visprompt.profiling.memory import peak_extra_bytes, tensor_bytes
from visprompt.profiling.steps import make_train_step

FAST = ProfileSettings(
    image_size=32, train_batch_size=4, infer_batch_size=4, warmup=1, repeats=2,
    latency_repeats=3, device="cpu", progress=False,
)  # fmt: skip


def _models(backbone: torch.nn.Module) -> dict[str, torch.nn.Module]:
    backbone = freeze(backbone)
    return {
        "backbone": backbone,
        "linear_probe": methods.build("linear_probe", copy.deepcopy(backbone), 5),
    }


def test_profile_rows_have_every_column_and_exact_counts(tiny_resnet: torch.nn.Module) -> None:
    models = _models(tiny_resnet)
    rows = profile_models(models, FAST)
    assert [r["method"] for r in rows] == ["backbone", "linear_probe"]
    assert all(tuple(r)[: len(COLUMNS)] == COLUMNS for r in rows)
    bare, probe = rows
    width = models["backbone"].num_features
    assert bare["trainable_params"] == 0
    assert probe["trainable_params"] == width * 5 + 5  # Linear(D, 5)
    assert probe["total_params"] == bare["total_params"] + width * 5 + 5  # source fc kept
    for row in rows:
        assert row["train_step_ms"] > 0 and row["throughput_ips"] > 0
        assert 0 < row["latency_p50_ms"] <= row["latency_p95_ms"]
        assert row["peak_infer_mem_mb"] > 0 and row["peak_train_mem_mb"] > 0
    assert bare["throughput_ratio"] == 1.0 and bare["train_step_ratio"] == 1.0
    ratio = probe["throughput_ips"] / bare["throughput_ips"]
    assert probe["throughput_ratio"] == pytest.approx(ratio)


def test_reference_must_be_present_and_frozen(tiny_resnet: torch.nn.Module) -> None:
    models = _models(tiny_resnet)
    with pytest.raises(ValueError, match="reference model 'bare' missing"):
        profile_models(models, FAST, reference="bare")
    models["backbone"].requires_grad_(True)
    with pytest.raises(ValueError, match="has trainable parameters"):
        profile_models(models, FAST)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="repeats"):
        ProfileSettings(repeats=0)
    with pytest.raises(ValueError, match="latency_repeats"):
        ProfileSettings(latency_repeats=1)


def test_forward_flops_of_a_linear_layer_and_of_attention(tiny_vit: torch.nn.Module) -> None:
    layer = torch.nn.Linear(8, 3)
    assert forward_flops(layer, torch.randn(4, 8)) == 2 * 4 * 8 * 3
    vit = freeze(tiny_vit)  # 64 patches + CLS, D=64, 4 blocks, MLP 4D
    n, d, blocks = 65, 64, 4
    linear = blocks * 2 * n * (3 * d * d + d * d + 2 * 4 * d * d)
    attention = blocks * 2 * 2 * n * n * d  # QK^T and AV, counted on CPU fused SDPA too
    patch = 2 * 64 * (3 * 4 * 4) * d
    head = 2 * d * 10
    assert forward_flops(vit, torch.randn(1, 3, 32, 32)) == linear + attention + patch + head


def test_train_step_updates_only_trainable_and_memory_counts_gradients(
    tiny_resnet: torch.nn.Module,
) -> None:
    backbone = freeze(tiny_resnet)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    model = methods.build("linear_probe", backbone, 5)
    step = make_train_step(model, torch.randn(4, 3, 32, 32))
    head_before = model.head.weight.detach().clone()
    step()
    assert not torch.equal(model.head.weight, head_before)
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    # the first step allocates the head's gradient: the CPU measurement must see it
    extra = peak_extra_bytes(step, torch.device("cpu"))
    assert extra >= model.head.weight.numel() * 4
    assert tensor_bytes([model.head.weight, model.head.weight]) == model.head.weight.numel() * 4
