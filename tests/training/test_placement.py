"""Work after training runs on the engine's device and precision: bf16 really runs in bf16,
and its test metric stays close to fp32's (the difference is printed once)."""

from __future__ import annotations

import pytest
import torch
from tiny import IMAGE_SIZE, make_backbone
from torch.utils.data import TensorDataset

from visprompt import methods
from visprompt.backbones import data_config
from visprompt.evaluation import classification_metrics
from visprompt.prompt_init.tokens import layer_tokens
from visprompt.training import Placement, Preprocess, predict


def test_from_engine_resolves_device_and_precision() -> None:
    bf16 = Placement.from_engine({"accelerator": "cpu", "precision": "bf16-mixed"})
    assert bf16.device == torch.device("cpu") and bf16.dtype is torch.bfloat16
    assert Placement.from_engine({}).dtype is None  # the default engine: cpu, 32-true
    with pytest.raises(Exception, match="(?i)gpu|cuda"):
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        Placement.from_engine({"accelerator": "gpu", "precision": "32-true"})


def test_bf16_evaluation_runs_in_bf16_and_matches_fp32_metrics() -> None:
    torch.manual_seed(0)
    model = methods.build("linear_probe", make_backbone("vit"), 10).eval()
    images = torch.randint(0, 256, (96, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    preprocess = Preprocess.from_data_config(data_config(model.backbone))
    fp32_logits, _ = predict(model, TensorDataset(images, torch.zeros(96)), preprocess)
    labels = fp32_logits.argmax(1)  # fp32 top-1 is 1.0 by construction
    dataset = TensorDataset(images, labels)
    seen: list[torch.dtype] = []
    hook = model.head.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    bf16 = Placement.from_engine({"accelerator": "cpu", "precision": "bf16-mixed"})
    logits, _ = predict(model, dataset, preprocess, batch_size=32, placement=bf16)
    hook.remove()
    assert seen == [torch.bfloat16] * 3 and logits.dtype == torch.float32
    fp32 = classification_metrics(fp32_logits, labels)["top1"]
    half = classification_metrics(logits, labels)["top1"]
    print(f"\ntop-1 fp32 {fp32:.4f}, bf16-mixed {half:.4f}, difference {fp32 - half:+.4f}")
    assert fp32 == 1.0 and half >= 0.85  # near-ties may flip; most predictions must not
    assert 0 < (logits - fp32_logits).abs().max() < 0.25


def test_spt_tokens_in_bf16_come_back_as_float32_close_to_fp32() -> None:
    vit = make_backbone("vit")
    images = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    exact = dict(layer_tokens(vit, images, 3))
    half = dict(layer_tokens(vit, images, 3, torch.bfloat16))
    for layer in range(4):
        assert half[layer].dtype == torch.float32
        scale = exact[layer].abs().max()
        assert 0 < (half[layer] - exact[layer]).abs().max() < 0.1 * scale
