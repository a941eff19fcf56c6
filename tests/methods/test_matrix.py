"""Generic checks over every (method case, tiny backbone) pair of `cases.CASES`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from methods.cases import NUM_CLASSES, Case, matrix, refusals
from safetensors.torch import load_file
from tiny import IMAGE_SIZE, make_backbone

from visprompt import methods

PAIRS = [pytest.param(case, kind, id=f"{case.id}-{kind}") for case, kind in matrix()]
REFUSED = [pytest.param(case, kind, id=f"{case.id}-{kind}") for case, kind in refusals()]


def backbone(kind: str, seed: int = 0) -> torch.nn.Module:
    """A tiny backbone whose norm gammas are non-zero, as in a pretrained one.

    timm zero-initialises the last BatchNorm gamma of every residual block; that blocks
    every gradient into the branch and would hide a tensor that never trains.
    """
    bb = make_backbone(kind, seed)
    with torch.no_grad():
        for m in bb.modules():
            if isinstance(m, torch.nn.BatchNorm2d) and not m.weight.any():
                m.weight.fill_(1.0)
    return bb


def build(case: Case, kind: str, seed: int = 0) -> methods.AdaptedModel:
    return methods.build(case.method, backbone(kind, seed), NUM_CLASSES, **case.options_for(kind))


def batch(n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    return images, torch.arange(n) % NUM_CLASSES


def perturb(model: methods.AdaptedModel, seed: int = 1) -> None:
    """Give every trainable tensor a non-trivial value (zero-init prompts, LoRA B)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def backbone_snapshot(model: methods.AdaptedModel) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, live tensor, copy) for every backbone parameter and buffer."""
    live = list(model.backbone.named_parameters()) + list(model.backbone.named_buffers())
    return [(n, t, t.detach().clone()) for n, t in live]


def backbone_snapshot_of(bb: torch.nn.Module) -> list[tuple[str, str, bool, bool, bytes]]:
    """(name, module type, training, requires_grad, tensor bytes) of a backbone object."""
    modules = [(n, type(m).__name__, m.training, False, b"") for n, m in bb.named_modules()]
    tensors = [
        (n, "tensor", False, t.requires_grad, t.detach().numpy().tobytes())
        for n, t in [*bb.named_parameters(), *bb.named_buffers()]
    ]
    return modules + tensors


@pytest.mark.parametrize(("case", "kind"), PAIRS)
def test_trainable_parameters_match_formula(case: Case, kind: str) -> None:
    model = build(case, kind)
    expected = case.expected_trainable(make_backbone(kind), case.options_for(kind))
    counts = methods.count_parameters(model)
    assert counts["trainable"] == expected
    assert sum(p.numel() for p in model.trainable_parameters()) == expected
    assert counts["total"] >= sum(p.numel() for p in make_backbone(kind).parameters())


@pytest.mark.parametrize(("case", "kind"), PAIRS)
def test_training_changes_only_what_the_method_trains(case: Case, kind: str) -> None:
    bb = backbone(kind)
    caller = backbone_snapshot_of(bb)
    model = methods.build(case.method, bb, NUM_CLASSES, **case.options_for(kind))
    # a method may add modules to its backbone (LoRA's dropout, which follows train())
    original_modules = [
        m for n, m in model.backbone.named_modules() if "lora_dropout" not in n.split(".")
    ]
    snapshot = backbone_snapshot(model)
    images, labels = batch()
    opt = torch.optim.Adam(model.param_groups(lr=1e-2, weight_decay=0.0))
    model.train()
    modes = {m.training for m in original_modules}
    assert modes == ({True} if case.trains_backbone else {False})
    nonzero = dict.fromkeys((n for n, _ in model.named_trainable_parameters()), False)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        for name, p in model.named_parameters():
            if p.requires_grad:
                assert p.grad is not None, f"{name} is trainable but got no gradient"
                nonzero[name] |= bool(p.grad.abs().sum() > 0)
            else:
                assert p.grad is None, f"frozen {name} received a gradient"
        opt.step()
    assert all(nonzero.values()), [n for n, ok in nonzero.items() if not ok]
    # the caller's backbone object is exactly as before: modules, flags, mode, tensors
    assert backbone_snapshot_of(bb) == caller
    if case.trains_backbone:
        return
    for name, live, before in snapshot:
        if not (isinstance(live, torch.nn.Parameter) and live.requires_grad):
            assert torch.equal(live, before), f"frozen backbone tensor {name} changed"


@pytest.mark.parametrize(("case", "kind"), PAIRS)
def test_save_load_round_trip(case: Case, kind: str, tmp_path: Path) -> None:
    model = build(case, kind)
    perturb(model)
    model.eval()
    images, _ = batch()
    expected = model(images)
    methods.save(model, tmp_path / "artifact")

    restored = methods.load(tmp_path / "artifact", backbone(kind, seed=0)).eval()
    assert type(restored) is type(model)
    assert torch.equal(restored(images), expected)

    tensors = load_file(str(tmp_path / "artifact" / "prompt.safetensors"))
    assert set(tensors) == set(model.prompt_state_dict())
    trainable = {n for n, _ in model.named_trainable_parameters()}
    stored = sum(t.numel() for n, t in tensors.items() if n in trainable)
    assert stored == methods.count_parameters(model)["trainable"]
    if not case.trains_backbone:
        assert trainable >= {n for n in tensors if n.startswith("backbone.")}
        backbone_size = sum(p.numel() for p in make_backbone(kind).parameters())
        assert sum(t.numel() for t in tensors.values()) < 0.25 * backbone_size


@pytest.mark.parametrize(("case", "kind"), PAIRS)
def test_cached_split_matches_forward(case: Case, kind: str) -> None:
    model = build(case, kind)
    split = model.split_for_cache()
    if not case.cacheable:
        assert split is None, f"{case.id} offers a cache split: mark its case cacheable"
        return
    perturb(model)
    model.eval()
    prefix, suffix = split
    images, _ = batch()
    cached = prefix(images)
    assert cached.grad_fn is None and not cached.requires_grad
    assert torch.equal(suffix(cached), model(images))
    trainable = {id(p) for p in model.trainable_parameters()}
    assert {id(p) for p in suffix.parameters()} == trainable
    assert not list(prefix.parameters())


@pytest.mark.parametrize(("case", "kind"), REFUSED)
def test_refuses_backbones_it_does_not_apply_to(case: Case, kind: str) -> None:
    with pytest.raises(ValueError, match=case.method):
        build(case, kind)
