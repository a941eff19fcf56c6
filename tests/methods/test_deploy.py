"""Zero-overhead deployment: merged LoRA and folded AP compute what the trained model does,
with no method machinery left; LoRA artifacts are also readable by peft itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from tiny import IMAGE_SIZE, make_backbone

from visprompt import methods
from visprompt.backbones import pooled_features
from visprompt.methods.base import Classifier

C = 5


def perturb(model: torch.nn.Module) -> None:
    """Non-trivial trained values (LoRA's B and AP's δ start at zero)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def images(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", ["vit", "resnet"])
def test_merged_lora_equals_unmerged_and_leaves_the_model_alone(kind: str) -> None:
    model = methods.build("lora", make_backbone(kind), C)
    perturb(model)
    model.eval()
    x = images()
    expected = model(x)
    merged = model.served()
    assert isinstance(merged, Classifier)
    assert not any(isinstance(m, LoraLayer) for m in merged.modules())
    bare = sum(p.numel() for p in make_backbone(kind).parameters())
    assert methods.count_parameters(merged) == {
        "trainable": 0,
        "total": bare + model.head.weight.numel() + C,
    }
    torch.testing.assert_close(merged(x), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(merged(x), methods.build("lora", make_backbone(kind), C).eval()(x))
    torch.testing.assert_close(model(x), expected, atol=0, rtol=0)  # the model is unchanged
    assert any(isinstance(m, LoraLayer) for m in model.modules())


def test_lora_artifact_is_also_a_peft_adapter(tmp_path: Path) -> None:
    model = methods.build("lora", make_backbone("vit"), C, rank=4)
    perturb(model)
    model.eval()
    folder = methods.save(model, tmp_path / "lora")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in folder.iterdir()
    }
    adapted = PeftModel.from_pretrained(make_backbone("vit"), str(folder)).eval()
    assert adapted.peft_config["default"].r == 4
    x = images()
    torch.testing.assert_close(
        pooled_features(adapted.base_model.model, x), pooled_features(model.backbone, x),
        atol=1e-6, rtol=0,
    )  # fmt: skip
    restored = methods.load(folder, make_backbone("vit")).eval()  # our own format still loads
    torch.testing.assert_close(restored(x), model(x), atol=0, rtol=0)


@pytest.mark.parametrize(
    ("kind", "layer"), [("resnet", "bn1"), ("resnet", "layer2.0.bn2"), ("vit", "blocks.1.norm1")]
)
def test_ap_channel_after_a_norm_folds_into_its_beta(kind: str, layer: str) -> None:
    model = methods.build("ap", make_backbone(kind), C, layer=layer, granularity="channel")
    perturb(model)
    model.eval()
    x = images()
    folded = model.served()
    assert isinstance(folded, Classifier)
    torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=0)
    beta = folded.backbone.get_submodule(layer).bias
    original = make_backbone(kind).get_submodule(layer).bias
    torch.testing.assert_close(beta, original + model.prompt.delta, atol=0, rtol=0)
    assert torch.equal(model.backbone.get_submodule(layer).bias, original)  # model unchanged


def test_methods_that_cannot_fold_deploy_as_they_are() -> None:
    full = methods.build("ap", make_backbone("resnet"), C, layer="bn1", granularity="full")
    conv = methods.build("ap", make_backbone("resnet"), C, layer="layer1", granularity="channel")
    probe = methods.build("linear_probe", make_backbone("resnet"), C)
    for model in (full, conv, probe):
        assert model.served() is model
