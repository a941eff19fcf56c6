"""LoRA through peft: which layers get adapters, nothing else unfrozen, dropout mode,
identity at init (B = 0), custom targets, errors."""

from __future__ import annotations

import pytest
import torch
from peft.tuners.lora import LoraLayer
from tiny import make_backbone

from visprompt import methods
from visprompt.methods.lora import default_targets

C = 5


def adapted(model: methods.AdaptedModel) -> list[str]:
    return sorted(n for n, m in model.backbone.named_modules() if isinstance(m, LoraLayer))


def test_vit_adapts_attention_and_mlp_linears_only() -> None:
    model = methods.build("lora", make_backbone("vit"), C, rank=2)
    expected = sorted(
        f"blocks.{i}.{leaf}"
        for i in range(4)
        for leaf in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    )
    assert adapted(model) == expected  # not patch_embed.proj, not the source head


def test_cnn_adapts_ungrouped_convs_not_depthwise_nor_classifier() -> None:
    resnet = methods.build("lora", make_backbone("resnet"), C, rank=2)
    convs = [
        n for n, m in make_backbone("resnet").named_modules() if isinstance(m, torch.nn.Conv2d)
    ]
    assert adapted(resnet) == sorted(convs)  # every conv, fc excluded
    convnext = methods.build("lora", make_backbone("convnext"), C, rank=2)
    assert not any("conv_dw" in n for n in adapted(convnext))
    assert "head.fc" not in adapted(convnext) and "stem.0" in adapted(convnext)


@pytest.mark.parametrize("kind", ["vit", "resnet", "convnext"])
def test_peft_unfreezes_nothing_but_lora_matrices(kind: str) -> None:
    model = methods.build("lora", make_backbone(kind), C, rank=2)
    for name, _ in model.named_trainable_parameters():
        assert name.startswith("head.") or ".lora_A." in name or ".lora_B." in name, name
    assert all(".lora_" not in n for n, p in model.named_parameters() if not p.requires_grad)
    # the original weights live on, untouched, as `base_layer`
    original = dict(make_backbone(kind).named_parameters())
    for name, p in model.backbone.named_parameters():
        if ".lora_" not in name:
            assert torch.equal(p, original[name.replace(".base_layer", "")]), name


def test_zero_b_starts_from_the_backbone_function(images: torch.Tensor) -> None:
    model = methods.build("lora", make_backbone("vit"), C, rank=4).eval()
    probe = methods.build("linear_probe", make_backbone("vit"), C).eval()
    probe.head.load_state_dict(model.head.state_dict())
    assert torch.equal(model(images), probe(images))


def test_dropout_follows_train_mode_while_the_backbone_stays_in_eval(images: torch.Tensor) -> None:
    model = methods.build("lora", make_backbone("vit"), C, rank=4, dropout=0.5)
    with torch.no_grad():
        for name, p in model.named_trainable_parameters():
            if "lora_B" in name:
                p.normal_()
    model.train()
    dropouts = [
        m.lora_dropout["default"] for m in model.backbone.modules() if isinstance(m, LoraLayer)
    ]
    assert dropouts and all(d.training for d in dropouts)
    assert not model.backbone.training and not model.backbone.blocks[0].attn.qkv.training
    assert not torch.equal(model(images), model(images))  # dropout active
    model.eval()
    assert not any(d.training for d in dropouts)
    assert torch.equal(model(images), model(images))


def test_custom_targets_list_and_regex() -> None:
    d, blocks, r = 64, 4, 2
    head = d * C + C
    only_qkv = methods.build("lora", make_backbone("vit"), C, rank=r, targets=["qkv"])
    assert methods.count_parameters(only_qkv)["trainable"] == blocks * r * (d + 3 * d) + head
    regex = methods.build("lora", make_backbone("vit"), C, rank=r, targets=r"blocks\.0\.mlp\.fc\d")
    assert adapted(regex) == ["blocks.0.mlp.fc1", "blocks.0.mlp.fc2"]
    assert regex.method_config.targets == r"blocks\.0\.mlp\.fc\d"  # saved as given


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="match no supported layer"):
        methods.build("lora", make_backbone("vit"), C, targets=["nonexistent"])
    with pytest.raises(ValueError, match="option 'rank' is 0 .*greater than or equal to 1"):
        methods.build("lora", make_backbone("vit"), C, rank=0)
    bb = make_backbone("vit")
    first = methods.build("lora", bb, C)
    second = methods.build("lora", bb, C)  # the caller's backbone never carries LoRA layers
    assert methods.count_parameters(first) == methods.count_parameters(second)
    with pytest.raises(ValueError, match="already carries LoRA"):
        methods.build("lora", first.backbone, C)


def test_default_targets_on_a_vit_name_only_block_linears() -> None:
    names = default_targets(make_backbone("vit_reg"))
    assert len(names) == 16 and all(n.startswith("blocks.") for n in names)
