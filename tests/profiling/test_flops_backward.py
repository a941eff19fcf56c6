"""The backward pass pays only for what is trained: structural checks, not wall-clock."""

from __future__ import annotations

import copy

import pytest
import torch

from visprompt import methods
from visprompt.profiling.flops import backward_cost


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 3])


def test_linear_probe_backward_is_the_head_only(tiny_resnet: torch.nn.Module) -> None:
    model = methods.build("linear_probe", tiny_resnet, 5).train()
    images, labels = _batch()
    cost = backward_cost(model, images, labels)
    width = model.backbone.num_features
    # grad of W (5 x D) from a batch of 4: one matmul of 2*4*D*5 FLOPs; nothing else
    assert cost.backward_flops == 2 * 4 * width * 5
    assert cost.saved_bytes <= 4 * width * 4 + 4 * 5 * 4 + 1024  # features + logits
    # an input that requires grad drags the whole backbone into the backward pass
    dragged = backward_cost(model, images.requires_grad_(True), labels)
    assert dragged.backward_flops > 100 * cost.backward_flops
    assert dragged.graph_nodes > 10 * cost.graph_nodes


@pytest.mark.skipif(
    not {"ap", "vp"} <= set(methods.available()), reason="needs the ap and vp methods"
)
def test_ap_at_the_last_stage_backpropagates_far_less_than_vp(
    tiny_resnet: torch.nn.Module,
) -> None:
    images, labels = _batch()
    ap = methods.build("ap", copy.deepcopy(tiny_resnet), 5, layer="layer4", image_size=32)
    vp = methods.build("vp", tiny_resnet, 5, prompt_size=4, image_size=32)
    ap.train()
    vp.train()
    cost_ap, cost_vp = backward_cost(ap, images, labels), backward_cost(vp, images, labels)
    # VP differentiates through every conv to reach its input-space prompt; AP stops at
    # layer4's output: its backward is the pooled head plus the broadcast add
    assert cost_ap.backward_flops < 0.01 * cost_vp.backward_flops
    assert cost_ap.saved_bytes < 0.05 * cost_vp.saved_bytes
    assert cost_ap.graph_nodes < cost_vp.graph_nodes / 4
    # no backbone tensor before layer4 can reach the gradient: none requires it
    assert not any(p.requires_grad for p in ap.backbone.parameters())


@pytest.mark.skipif("ap" not in methods.available(), reason="needs the ap method")
def test_ap_backward_never_enters_modules_before_its_layer(tiny_resnet: torch.nn.Module) -> None:
    model = methods.build("ap", tiny_resnet, 5, layer="layer4", image_size=32).train()
    entered: list[str] = []
    for name, module in model.backbone.named_children():
        module.register_full_backward_pre_hook(lambda m, g, name=name: entered.append(name))
    images, labels = _batch()
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    assert "global_pool" in entered  # the hooks do fire where the gradient flows
    assert not {"conv1", "bn1", "layer1", "layer2", "layer3"} & set(entered)
