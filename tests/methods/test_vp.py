"""VP: parameter counts, identity at zero prompt, patch placement, training isolation."""

from __future__ import annotations

import pytest
import torch
from tiny import IMAGE_SIZE, make_backbone

from visprompt import methods
from visprompt.backbones import pooled_features
from visprompt.methods.vp import PadPrompt, PatchPrompt

C = 5


def test_pad_prompt_parameter_count_matches_formula() -> None:
    assert sum(p.numel() for p in PadPrompt(224, 30).parameters()) == 69_840 == 12 * 30 * 194
    assert sum(p.numel() for p in PadPrompt(224, 112).parameters()) == 150_528 == 3 * 224**2
    assert sum(p.numel() for p in PatchPrompt(224, 30, False).parameters()) == 3 * 30**2


def test_pad_prompt_materialises_border_only() -> None:
    pad = PadPrompt(12, 3)
    full = pad()
    assert full.shape == (1, 3, 12, 12)
    assert torch.equal(full[..., 3:9, 3:9], torch.zeros(1, 3, 6, 6))
    assert torch.equal(full[0, :, :3, :], pad.top) and torch.equal(full[0, :, 9:, :], pad.bottom)
    assert torch.equal(full[0, :, 3:9, :3], pad.left)
    assert torch.equal(full[0, :, 3:9, 9:], pad.right)
    assert torch.equal((full != 0).float().amax(1, keepdim=True), pad.mask)
    assert int(pad.mask.sum()) == 12 * 12 - 6 * 6


@pytest.mark.parametrize("design,expected", [("pad", 12 * 4 * 28), ("fixed_patch", 3 * 16)])
def test_trainable_counts_with_mapping_and_head(design: str, expected: int) -> None:
    bb = make_backbone("vit")
    mapped = methods.build(
        "vp", bb, C, design=design, prompt_size=4, image_size=32, output="first_k"
    )
    assert methods.count_parameters(mapped)["trainable"] == expected
    headed = methods.build("vp", bb, C, design=design, prompt_size=4, image_size=32)
    assert methods.count_parameters(headed)["trainable"] == expected + 64 * C + C


@pytest.mark.parametrize("kind", ["vit", "resnet"])
def test_zero_prompt_equals_bare_backbone(kind: str, images: torch.Tensor) -> None:
    bb = make_backbone(kind)
    with torch.no_grad():
        source = bb(images)
        features = pooled_features(bb, images)
    mapped = methods.build("vp", bb, C, image_size=IMAGE_SIZE, output="first_k").eval()
    headed = methods.build("vp", bb, C, image_size=IMAGE_SIZE).eval()
    with torch.no_grad():
        for model in (mapped, headed):
            for p in model.prompt.parameters():
                p.zero_()
        assert torch.equal(mapped(images), source[:, :C])
        assert torch.equal(headed(images), headed.head(features))


def test_sequence_length_unchanged(images: torch.Tensor) -> None:
    bb = make_backbone("vit")
    lengths: list[int] = []
    bb.blocks[0].register_forward_pre_hook(lambda _m, args: lengths.append(args[0].shape[1]))
    methods.build("vp", bb, C, image_size=IMAGE_SIZE)(images)
    assert lengths == [1 + 64]


def test_random_patch_moves_in_training_and_sits_top_left_at_eval() -> None:
    patch = PatchPrompt(16, 4, random_location=True)
    torch.manual_seed(0)
    corners = set()
    for _ in range(20):
        nonzero = patch().abs().sum(1)[0].nonzero()
        assert len(nonzero) == 16  # one p×p patch
        corners.add(tuple(nonzero.min(0).values.tolist()))
    assert len(corners) > 1
    patch.eval()
    fixed = PatchPrompt(16, 4, random_location=False)
    fixed.patch.data.copy_(patch.patch.data)
    assert torch.equal(patch(), patch()) and torch.equal(patch(), fixed())
    assert torch.equal(patch()[0, :, :4, :4], patch.patch)


def test_random_patch_offsets_cover_zero_to_s_minus_p_inclusive() -> None:
    """Every placement of the patch, the bottom/right edge included: the reference's
    `np.random.choice(S - p)` draws 0..S-p-1 and never reaches it (a stated departure)."""
    patch = PatchPrompt(8, 5, random_location=True)  # S - p = 3: offsets 0, 1, 2, 3
    torch.manual_seed(0)
    corners = {tuple(patch().abs().sum(1)[0].nonzero().min(0).values.tolist()) for _ in range(200)}
    assert corners == {(top, left) for top in range(4) for left in range(4)}


# Training isolation (gradients only to these, backbone bitwise unchanged) runs in
# test_matrix.py over the vp cases of cases.py.
@pytest.mark.parametrize(
    "design,output", [("pad", "head"), ("random_patch", "first_k"), ("fixed_patch", "iterative")]
)
def test_trains_only_the_prompt_and_head(design: str, output: str) -> None:
    model = methods.build(
        "vp",
        make_backbone("vit"),
        C,
        design=design,
        prompt_size=6,
        image_size=IMAGE_SIZE,
        output=output,
    )
    expected = (
        {"prompt.patch"}
        if design != "pad"
        else {"prompt.top", "prompt.bottom", "prompt.left", "prompt.right"}
    )
    if output == "head":
        expected |= {"head.weight", "head.bias"}
    assert {n for n, _ in model.named_trainable_parameters()} == expected


def test_bad_options_are_clear_errors() -> None:
    bb = make_backbone("vit")
    with pytest.raises(ValueError, match="vp option 'design' is 'ring'"):
        methods.build("vp", bb, C, design="ring", image_size=32)
    with pytest.raises(ValueError, match="option 'output' is 'random'.*'head', 'first_k'"):
        methods.build("vp", bb, C, output="random", image_size=32)
    with pytest.raises(ValueError, match=r"prompt_size must be in \[1, 16\]"):
        methods.build("vp", bb, C, prompt_size=17, image_size=32)
    with pytest.raises(ValueError, match="has only 10"):
        methods.build("vp", bb, 11, output="first_k", image_size=32)
    with pytest.raises(ValueError, match="resize inputs"):
        methods.build("vp", bb, C, image_size=32)(torch.zeros(1, 3, 48, 48))
    headless = make_backbone("vit")
    headless.reset_classifier(0)
    with pytest.raises(ValueError, match="has none.*MAE"):
        methods.build("vp", headless, C, output="iterative", image_size=32)
    with pytest.raises(ValueError, match="training loader"):
        methods.build("vp", bb, C, output="iterative", image_size=32).on_epoch_start(0)


def test_save_load_keeps_prompt_and_label_mapping(tmp_path, images: torch.Tensor) -> None:
    model = methods.build(
        "vp", make_backbone("vit"), C, image_size=IMAGE_SIZE, output="frequency"
    ).eval()
    with torch.no_grad():
        model.head.mapping.copy_(torch.tensor([9, 3, 0, 7, 1]))
    methods.save(model, tmp_path / "vp")
    loaded = methods.load(tmp_path / "vp", make_backbone("vit")).eval()
    assert torch.equal(loaded.head.mapping, torch.tensor([9, 3, 0, 7, 1]))
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
