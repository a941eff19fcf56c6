"""Prefix caching: same numbers as the uncached run; a cache outlives its `fit` only to serve
the same prefix on the same data again (a run's next seed)."""

from __future__ import annotations

import pytest
import torch
from tiny import make_backbone
from training.train_helpers import ColourImages, LayerShift, preprocess_for, probe_model, run_config

from visprompt import methods
from visprompt.backbones import tensors_sha256
from visprompt.training import fit, prefix_cache
from visprompt.training.prefix_cache import live_bytes, release_reused

TRAIN, VAL = ColourImages(48, 0), ColourImages(20, 1)
NUMBERS = ("train_loss", "train_top1", "val_loss", "val_top1", "lr")


def _assert_same_numbers(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for row_a, row_b in zip(a, b, strict=True):
        for key in NUMBERS:
            assert row_a[key] == pytest.approx(row_b[key], abs=1e-5), key


def _status(result) -> tuple[str, str]:
    return result.cache["train"], result.cache["val"]


def _fit(model, cache: bool, train=TRAIN, on_epoch_end=None, val=VAL, **overrides):
    config = run_config(epochs=2, cache_prefix=cache, **overrides)
    return fit(model, train, val, preprocess_for(model), config, on_epoch_end=on_epoch_end)


def test_linear_probe_cached_equals_uncached_and_frees_its_cache() -> None:
    plain, cached = probe_model(), probe_model()
    reference = _fit(plain, cache=False)
    before = live_bytes()
    held: list[int] = []
    result = _fit(cached, cache=True, on_epoch_end=lambda epoch, row: held.append(live_bytes()))
    assert _status(reference) == ("off", "off")
    assert _status(result) == ("built", "built")
    assert 0 < result.cache["build_s"] < result.train_time_s
    # the build counts once, however many epochs follow
    epochs_s = sum(row["epoch_time_s"] for row in result.history)
    assert result.train_time_s == pytest.approx(epochs_s + result.cache["build_s"])
    # features (48 + 20 items x D floats) and labels were held while training, not after
    width = cached.head.in_features
    assert held == [before + (48 + 20) * (width * 4 + 8)] * 2
    assert live_bytes() == before
    _assert_same_numbers(result.history, reference.history)
    torch.testing.assert_close(cached.head.weight, plain.head.weight, atol=1e-5, rtol=0)
    again = probe_model()
    assert _status(_fit(again, cache=True)) == ("built", "built")  # nothing kept across fits
    torch.testing.assert_close(again.head.weight, cached.head.weight, atol=0, rtol=0)


@pytest.mark.parametrize(("kind", "layer"), [("resnet", "layer3"), ("vit", "blocks.1")])
def test_activation_prompt_cached_equals_uncached(kind: str, layer: str) -> None:
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


def test_cached_layer_shift_gets_gradients_through_the_frozen_rest() -> None:
    plain = LayerShift(make_backbone("resnet"), 4, layer="layer3")
    cached = LayerShift(make_backbone("resnet"), 4, layer="layer3")  # same weights, same head
    reference = _fit(plain, cache=False)
    result = _fit(cached, cache=True)
    assert result.cache["train"] == "built"
    _assert_same_numbers(result.history, reference.history)
    torch.testing.assert_close(cached.delta, plain.delta, atol=1e-5, rtol=0)
    assert cached.delta.abs().sum() > 0


def test_past_its_budget_the_cache_spills_to_disk_with_same_numbers(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where fit's temporary folder goes
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    reference = _fit(probe_model(), cache=False)
    files: list[int] = []
    count = lambda epoch, row: files.append(len(list(tmp_path.rglob("prefix-*.bin"))))  # noqa: E731
    over = _fit(probe_model(), cache=True, cache_max_bytes=1024, on_epoch_end=count)
    assert _status(over) == ("spilled", "spilled")
    assert files == [2, 2] and list(tmp_path.iterdir()) == []  # removed when fit returned
    _assert_same_numbers(over.history, reference.history)
    augmented = _fit(probe_model(), cache=True, augment="flip_crop")
    assert _status(augmented) == ("off", "off")


class HashedImages(ColourImages):
    """ColourImages that state their content, as ShardDataset does: cacheable across fits."""

    nbytes = property(lambda self: self.images.numel() + 8 * self.labels.numel())

    def content_digest(self) -> str:
        return tensors_sha256([("images", self.images), ("labels", self.labels)])


def test_a_second_seed_reuses_the_kept_cache_with_the_same_numbers(monkeypatch) -> None:
    release_reused()
    train, val = HashedImages(48, 0), HashedImages(20, 1)
    first = _fit(probe_model(), cache=True, train=train, val=val)
    assert _status(first) == ("built", "built")
    kept = live_bytes()
    second = _fit(probe_model(), cache=True, train=train, val=val, seed=1)
    assert _status(second) == ("reused", "reused") and live_bytes() == kept
    fresh = _fit(probe_model(), cache=False, train=train, val=val, seed=1)
    _assert_same_numbers(second.history, fresh.history)
    # other data, other prefix weights or another size: built, never served the kept features
    assert (
        _status(_fit(probe_model(), cache=True, train=HashedImages(48, 5), val=val))[0] == "built"
    )
    other = probe_model()
    with torch.no_grad():
        next(other.backbone.parameters()).add_(0.1)
    assert _status(_fit(other, cache=True, train=train, val=val)) == ("built", "built")
    monkeypatch.setattr(prefix_cache, "REUSE_MAX_BYTES", 64)  # too big to keep: freed as before
    release_reused()
    before = live_bytes()
    assert _status(_fit(probe_model(), cache=True, train=train, val=val))[0] == "built"
    assert _status(_fit(probe_model(), cache=True, train=train, val=val))[0] == "built"
    assert live_bytes() == before


class CountedImages(ColourImages):
    """ColourImages that count the items read."""

    reads = 0

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        CountedImages.reads += 1
        return super().__getitem__(index)


def test_a_finished_run_resumes_without_a_pass_over_the_data(tmp_path) -> None:
    """Its checkpoint has no epoch left: no prefix cache is built, no image read."""
    train, val = CountedImages(48, 0), CountedImages(20, 1)
    first = probe_model()
    done = _fit(first, cache=True, train=train, val=val, checkpoint_dir=str(tmp_path))
    assert _status(done) == ("built", "built") and CountedImages.reads > 0
    CountedImages.reads = 0
    again = probe_model()
    resumed = _fit(again, cache=True, train=train, val=val, checkpoint_dir=str(tmp_path))
    assert CountedImages.reads == 0 and _status(resumed) == ("off", "off")
    assert resumed.history == done.history and resumed.best_epoch == done.best_epoch
    assert torch.equal(again.head.weight, first.head.weight)
