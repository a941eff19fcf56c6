"""PGN: parameter formula, token placement in the reserved strip, gradients, save/load."""

from __future__ import annotations

import pytest
import torch
from tiny import make_backbone

from visprompt import methods
from visprompt.backbones import pooled_features
from visprompt.methods import vit_tokens
from visprompt.methods.pgn import strip_positions

L, M, C = 16, 32, 5


def generator_params(widths: tuple[int, ...]) -> int:
    """Stem conv + BN, one basic block per stage (1×1 conv + BN shortcut when it changes shape)."""
    total = 3 * widths[0] * 9 + 2 * widths[0]
    in_ch = widths[0]
    for i, out in enumerate(widths):
        total += 9 * in_ch * out + 9 * out * out + 4 * out
        if i > 0 or in_ch != out:
            total += in_ch * out + 2 * out
        in_ch = out
    return total


def test_generator_size_matches_the_reference() -> None:
    assert generator_params((16, 32, 64, 128)) == 307_536  # the card's "≈ 307 k"


@pytest.mark.parametrize("widths", [(16, 32, 64, 128), (8, 16, 32, 64)])
def test_parameter_count_matches_formula(widths: tuple[int, ...]) -> None:
    model = methods.build(
        "pgn", make_backbone("vit"), C, num_prompts=L, library_size=M, widths=list(widths)
    )
    d = 64
    expected = generator_params(widths) + (widths[-1] + 1) * L * M + M * d + d * C + C
    counts = methods.count_parameters(model)
    assert counts["trainable"] == expected
    assert counts["total"] == expected + sum(q.numel() for q in model.backbone.parameters())


def test_tokens_are_library_mixtures(images: torch.Tensor) -> None:
    model = methods.build("pgn", make_backbone("vit"), C, num_prompts=L, library_size=M).eval()
    weights = model.generator.mixture(images)
    assert weights.shape == (4, L, M)
    assert torch.allclose(weights.sum(-1), torch.ones(4, L)) and (weights >= 0).all()
    assert torch.allclose(model.prompt_tokens(images), weights @ model.generator.library)


def test_tokens_replace_the_bottom_strip(images: torch.Tensor) -> None:
    """With tokens equal to the strip's own patch embeddings, PGN is the plain backbone."""
    model = methods.build("pgn", make_backbone("vit"), C, num_prompts=L, library_size=M).eval()
    assert strip_positions((8, 8), L).tolist() == list(range(48, 64))  # bottom two rows
    own = vit_tokens.embed_patches(model.backbone, images)[:, -L:]
    model.generator.forward = lambda x: own  # the generator's output is the only change
    assert torch.allclose(
        model.features(images), pooled_features(model.backbone, images), atol=1e-5
    )


def test_training_updates_generator_library_head_only(images: torch.Tensor) -> None:
    model = methods.build("pgn", make_backbone("vit"), C, num_prompts=L, library_size=M).train()
    assert model.generator.training and not model.backbone.training  # generator BN trains
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    stats = model.generator.features[1].running_mean.clone()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model(images), torch.tensor([0, 1, 2, 3])).backward()
    assert model.generator.library.grad.abs().sum() > 0
    assert model.generator.features[0].weight.grad.abs().sum() > 0
    assert model.head.weight.grad.abs().sum() > 0
    assert all(q.grad is None for q in model.backbone.parameters())
    opt.step()
    assert not torch.equal(stats, model.generator.features[1].running_mean)
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())


def test_save_load_round_trip(tmp_path, images: torch.Tensor) -> None:
    model = methods.build(
        "pgn", make_backbone("vit"), C, num_prompts=4, library_size=8, widths=[8, 8, 16, 16]
    )
    model.train()(images)  # move the BN running statistics away from their init
    methods.save(model.eval(), tmp_path / "pgn")
    loaded = methods.load(tmp_path / "pgn", make_backbone("vit")).eval()
    assert loaded.options == model.options
    assert torch.equal(loaded(images), model(images))


def test_bad_backbones_and_options_are_refused() -> None:
    with pytest.raises(ValueError, match="VisionTransformer"):
        methods.build("pgn", make_backbone("resnet"), C)
    with pytest.raises(ValueError, match=r"num_prompts must be in \[1, 64\]"):
        methods.build("pgn", make_backbone("vit"), C, num_prompts=65)
