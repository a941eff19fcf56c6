"""Prefix caching: same numbers as the uncached run, and a key that follows backbone/data/layer."""

from __future__ import annotations

import pytest
import torch
from tiny import make_backbone
from training.train_helpers import ColourImages, LayerShift, preprocess_for, probe_model, run_config

from visprompt import methods
from visprompt.training import fit
from visprompt.training.prefix_cache import STORE

TRAIN, VAL = ColourImages(48, 0), ColourImages(20, 1)
NUMBERS = ("train_loss", "train_top1", "val_loss", "val_top1", "lr")


def _assert_same_numbers(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for row_a, row_b in zip(a, b, strict=True):
        for key in NUMBERS:
            assert row_a[key] == pytest.approx(row_b[key], abs=1e-5), key


def _status(result) -> tuple[str, str]:
    return result.cache["train"], result.cache["val"]


def _fit(model, cache: bool, train=TRAIN, **overrides):
    config = run_config(epochs=2, cache_prefix=cache, **overrides)
    return fit(model, train, VAL, preprocess_for(model), config)


def test_linear_probe_cached_equals_uncached_and_is_reused() -> None:
    STORE.clear()
    plain, cached = probe_model(), probe_model()
    reference = _fit(plain, cache=False)
    result = _fit(cached, cache=True)
    assert _status(reference) == ("off", "off")
    assert _status(result) == ("built", "built")
    assert 0 < result.cache["build_s"] < result.train_time_s
    _assert_same_numbers(result.history, reference.history)
    torch.testing.assert_close(cached.head.weight, plain.head.weight, atol=1e-5, rtol=0)
    again = probe_model()
    assert _status(_fit(again, cache=True)) == ("hit", "hit")
    torch.testing.assert_close(again.head.weight, cached.head.weight, atol=0, rtol=0)


@pytest.mark.parametrize(("kind", "layer"), [("resnet", "layer3"), ("vit", "blocks.1")])
def test_activation_prompt_cached_equals_uncached(kind: str, layer: str) -> None:
    STORE.clear()
    runs = []
    for cache in (False, True):
        model = methods.build("ap", make_backbone(kind), 4, layer=layer, image_size=32)
        runs.append((model, _fit(model, cache=cache)))
    (plain, reference), (cached, result) = runs
    assert _status(result) == ("built", "built")
    _assert_same_numbers(result.history, reference.history)
    for (name, a), b in zip(
        cached.prompt_state_dict().items(), plain.prompt_state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)


def test_cache_follows_layer_backbone_and_data() -> None:
    STORE.clear()
    plain = LayerShift(make_backbone("resnet"), 4, layer="layer3")
    backbone = make_backbone("resnet")  # same seed: the same weights, and the same head init
    cached = LayerShift(backbone, 4, layer="layer3")
    reference = _fit(plain, cache=False)
    result = _fit(cached, cache=True)
    assert result.cache["train"] == "built"
    _assert_same_numbers(result.history, reference.history)
    # gradients reached the shift through the frozen rest of the network
    torch.testing.assert_close(cached.delta, plain.delta, atol=1e-5, rtol=0)
    assert cached.delta.abs().sum() > 0

    status = lambda model, **kw: _fit(model, cache=True, **kw).cache["train"]  # noqa: E731
    assert status(LayerShift(backbone, 4, layer="layer3")) == "hit"
    assert status(LayerShift(backbone, 4, layer="layer4.0")) == "built"  # other layer
    assert status(LayerShift(backbone, 4, layer="layer3")) == "hit"
    assert status(LayerShift(backbone, 4, layer="layer3"), train=ColourImages(48, 5)) == "built"
    with torch.no_grad():
        backbone.layer1[0].conv1.weight.mul_(1.01)  # the backbone changed
    assert status(LayerShift(backbone, 4, layer="layer3")) == "built"


def test_over_budget_or_augmented_runs_uncached_with_same_numbers() -> None:
    STORE.clear()
    reference = _fit(probe_model(), cache=False)
    over = _fit(probe_model(), cache=True, cache_max_bytes=1024)
    assert over.cache["train"] == "over_budget"
    _assert_same_numbers(over.history, reference.history)
    augmented = _fit(probe_model(), cache=True, augment="flip_crop")
    assert _status(augmented) == ("off", "off")
