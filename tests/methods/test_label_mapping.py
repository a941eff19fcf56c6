"""Label mappings: greedy one-to-one assignment, and ILM-VP / FLM on a known permutation."""

from __future__ import annotations

import torch
from tiny import IMAGE_SIZE, make_backbone

from visprompt import methods
from visprompt.methods.vp.label_mapping import co_occurrence, greedy_one_to_one


def test_co_occurrence_counts() -> None:
    counts = co_occurrence(torch.tensor([2, 2, 0, 1]), torch.tensor([0, 0, 1, 1]), 3, 2)
    assert counts.tolist() == [[0, 1], [0, 1], [2, 0]]


def test_greedy_takes_the_largest_count_first_and_is_one_to_one() -> None:
    # Both targets' favourite source is 0; target 1 has the larger count, so it wins
    # source 0 and target 0 falls back to its next best, source 2.
    counts = torch.tensor([[5, 9], [0, 1], [4, 0]])
    assert greedy_one_to_one(counts).tolist() == [2, 0]
    # One-to-one on a random matrix: C distinct sources.
    random_counts = torch.randint(0, 50, (10, 7), generator=torch.Generator().manual_seed(0))
    assert len(set(greedy_one_to_one(random_counts).tolist())) == 7


def _spread_source_head(model: methods.AdaptedModel, images: torch.Tensor) -> None:
    """Standardise the source head's logits on these images, so that a random tiny backbone
    predicts many different source classes (unchanged, it predicts nearly one class)."""
    head = model.backbone.get_classifier()
    with torch.no_grad():
        logits = model.backbone(model.eval().prompted(images))
        head.weight.div_(logits.std(0)[:, None])
        head.bias.copy_((head.bias - logits.mean(0)) / logits.std(0))


def _permuted_task(model: methods.AdaptedModel, perm: torch.Tensor, n: int = 48):
    """Images whose target label is a known permutation of the prompted source prediction."""
    images = torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(3))
    _spread_source_head(model, images)
    with torch.no_grad():
        source = model.backbone(model.eval().prompted(images)).argmax(1)
    labels = perm[source]
    return [(images[:24], labels[:24]), (images[24:], labels[24:])], images, labels, source


def _top1(model: methods.AdaptedModel, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (model.eval()(images).argmax(1) == labels).float().mean().item()


def test_iterative_recovers_a_known_permutation_and_beats_first_k() -> None:
    perm = torch.tensor([3, 7, 0, 9, 5, 1, 8, 2, 6, 4])  # source k -> target perm[k]
    bb = make_backbone("vit")
    model = methods.build("vp", bb, 10, image_size=IMAGE_SIZE, output="iterative")
    loader, images, labels, source = _permuted_task(model, perm)
    first_k_top1 = _top1(model, images, labels)
    model.on_epoch_start(0, loader)
    mapping = model.head.mapping
    assert sorted(mapping.tolist()) == list(range(10))  # one-to-one
    assert len(source.unique()) >= 8
    for k in source.unique():  # every observed source class is mapped to its target
        assert int(mapping[perm[k]]) == int(k)
    assert _top1(model, images, labels) == 1.0 > first_k_top1


def test_frequency_is_computed_once_iterative_every_epoch() -> None:
    bb = make_backbone("vit")
    iterative = methods.build("vp", bb, 10, image_size=IMAGE_SIZE, output="iterative")
    frequency = methods.build("vp", bb, 10, image_size=IMAGE_SIZE, output="frequency")
    frequency.prompt.load_state_dict(iterative.prompt.state_dict())
    perm_a = torch.tensor([3, 7, 0, 9, 5, 1, 8, 2, 6, 4])
    perm_b = torch.roll(perm_a, 1)
    loader_a, *_ = _permuted_task(iterative, perm_a)
    loader_b, *_ = _permuted_task(iterative, perm_b)
    for model in (iterative, frequency):
        model.on_epoch_start(0, loader_a)
    first = frequency.head.mapping.clone()
    assert torch.equal(first, iterative.head.mapping)
    for model in (iterative, frequency):
        model.on_epoch_start(1, loader_b)
    assert torch.equal(frequency.head.mapping, first)
    assert not torch.equal(iterative.head.mapping, first)
    assert int(frequency.head.updates) == 1 and int(iterative.head.updates) == 2


def test_uint8_loader_is_preprocessed_with_the_backbone_data_config() -> None:
    bb = make_backbone("vit")
    model = methods.build("vp", bb, 10, image_size=IMAGE_SIZE, output="iterative")
    raw = torch.randint(0, 256, (8, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    model.on_epoch_start(0, [(raw, torch.arange(8))])
    assert sorted(model.head.mapping.tolist()) == list(range(10))
    assert model.training  # restored after the eval-mode pass


def test_counts_are_summed_over_data_parallel_processes(tmp_path) -> None:
    """Under a process group the counts are all-reduced (one gloo process here)."""
    import torch.distributed as dist

    if dist.is_initialized():  # a group another test of this worker left open
        dist.destroy_process_group()
    bb = make_backbone("vit")
    model = methods.build("vp", bb, 10, image_size=IMAGE_SIZE, output="iterative")
    loader, *_ = _permuted_task(model, torch.tensor([3, 7, 0, 9, 5, 1, 8, 2, 6, 4]))
    model.on_epoch_start(0, loader)
    alone = model.head.mapping.clone()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        model.on_epoch_start(1, loader)
    finally:
        dist.destroy_process_group()
    assert torch.equal(model.head.mapping, alone)
