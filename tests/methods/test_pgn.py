"""PGN: parameter formula, prompt rows under the whole image, gradients, save/load."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from tiny import TINY_BACKBONES, make_backbone

from visprompt import methods
from visprompt.backbones import pooled_features
from visprompt.methods import vit_tokens
from visprompt.methods.pgn import PromptLayout, default_width, generator_parameters
from visprompt.methods.pgn.model import TokenGenerator

L, M, C = 16, 32, 5


def trunk_params(widths: tuple[int, ...]) -> int:
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
    assert trunk_params((16, 32, 64, 128)) == generator_parameters(16) == 307_536  # "≈ 307 k"
    assert default_width(86_567_656) == 16  # ViT-B/16 gets the reference generator


@pytest.mark.parametrize("width", [2, 4])
def test_parameter_count_matches_formula(width: int) -> None:
    model = methods.build(
        "pgn", make_backbone("vit"), C, num_prompts=L, library_size=M, width=width
    )
    d = 64
    widths = (width, 2 * width, 4 * width, 8 * width)
    expected = trunk_params(widths) + (8 * width + 1) * L * M + M * d + d * C + C
    counts = methods.count_parameters(model)
    assert counts["trainable"] == expected
    assert counts["total"] == expected + sum(q.numel() for q in model.backbone.parameters())


def test_default_width_keeps_pgn_a_small_fraction_of_the_backbone() -> None:
    """The embedded default (vit_fmnist: D = 96, 4 blocks, patch 8; L = 8, M = 16): ≈ 1 %."""
    vit = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=96,
        depth=4,
        num_heads=3,
        num_classes=10,
    )
    backbone = sum(q.numel() for q in vit.parameters())
    model = methods.build("pgn", vit, 10, num_prompts=8, library_size=16)
    assert model.method_config.width == 1
    own = methods.count_parameters(model)["trainable"] - (96 * 10 + 10)  # without the head
    assert own == generator_parameters(1) + 9 * 8 * 16 + 16 * 96 == 3_999
    assert 0.005 < own / backbone < 0.015


def test_generator_init_is_the_references_kaiming_fan_out() -> None:
    """Convolutions ~ N(0, 2 / fan_out) as in the reference's ResNet, BatchNorm 1 / 0."""
    torch.manual_seed(0)
    generator = TokenGenerator(L, M, 64, width=16)
    convs = [m for m in generator.features.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 12  # stem, 2 per stage, 3 shortcuts
    for conv in convs:
        out_ch, _, kh, kw = conv.weight.shape
        expected = (2.0 / (out_ch * kh * kw)) ** 0.5
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.12)
    norms = [m for m in generator.features.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(bool((n.weight == 1).all() and (n.bias == 0).all()) for n in norms)


def test_tokens_are_library_mixtures(images: torch.Tensor) -> None:
    model = methods.build("pgn", make_backbone("vit"), C, num_prompts=L, library_size=M).eval()
    weights = model.generator.mixture(images)
    assert weights.shape == (4, L, M)
    assert torch.allclose(weights.sum(-1), torch.ones(4, L)) and (weights >= 0).all()
    assert torch.allclose(model.prompt_tokens(images), weights @ model.generator.library)


def test_layouts() -> None:
    below = PromptLayout((8, 8), 10)
    assert below.extra_rows == 2 and below.input_grid == (10, 8)
    assert below.positions == list(range(64, 74))  # under the image, raster order
    assert PromptLayout((8, 8), 16).extra_rows == 2 and PromptLayout((8, 8), 17).extra_rows == 3
    replace = PromptLayout((8, 8), 16, "replace")
    assert replace.extra_rows == 0 and replace.positions == list(range(48, 64))


def test_every_image_patch_reaches_the_vit_unchanged(images: torch.Tensor) -> None:
    model = methods.build("pgn", make_backbone("vit"), C, num_prompts=10, library_size=M).eval()
    tokens = model.prompt_tokens(images)
    sequence = model.patch_sequence(images, tokens)
    assert sequence.shape == (4, 10 * 8, 64)  # 8×8 image grid + 2 rows
    assert torch.equal(sequence[:, :64], vit_tokens.embed_patches(model.backbone, images))
    assert torch.equal(sequence[:, 64:74], tokens)
    blank = vit_tokens.embed_patches(model.backbone, torch.zeros(1, 3, 32, 32))[:, :1]
    assert torch.equal(sequence[:, 74:], blank.expand(4, 6, -1))


@pytest.mark.parametrize("kind", ["vit", "vit_reg", "vit_avg"])
def test_token_path_is_the_unmodified_vit_on_the_taller_image(kind: str, images) -> None:
    """Tokens = embeddings of RGB patches pasted under the image: PGN computes what timm's own
    model computes on the taller image, with timm's dynamic image size or `set_input_size`."""
    backbone = make_backbone(kind)
    model = methods.build("pgn", backbone, C, num_prompts=6, library_size=M).eval()
    rows = torch.randn(4, 3, 4, 32)  # one patch row of 4 px under the 32 px image
    rows[..., 6 * 4 :] = 0.0  # blank beyond the 6 prompt patches
    tall = torch.cat([images, rows], dim=-2)
    on_top = torch.cat([rows, torch.zeros(4, 3, 28, 32)], dim=-2)
    prompt_tokens = vit_tokens.embed_patches(backbone, on_top)[:, :6]
    model.generator.forward = lambda x: prompt_tokens  # only the generator changes
    resized = copy.deepcopy(backbone)
    resized.set_input_size(img_size=(36, 32))
    name, kwargs = TINY_BACKBONES[kind]
    dynamic = timm.create_model(name, pretrained=False, **kwargs, dynamic_img_size=True).eval()
    dynamic.load_state_dict(backbone.state_dict())
    expected = pooled_features(resized, tall)
    assert torch.allclose(model.features(images), expected, atol=1e-5)
    assert torch.allclose(pooled_features(dynamic, tall), expected, atol=1e-5)


def test_replace_is_an_explicit_option(images: torch.Tensor) -> None:
    """`replace`: tokens equal to the bottom rows' own embeddings give the plain backbone."""
    model = methods.build(
        "pgn", make_backbone("vit"), C, num_prompts=L, library_size=M, placement="replace"
    ).eval()
    own = vit_tokens.embed_patches(model.backbone, images)[:, -L:]
    model.generator.forward = lambda x: own
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
    model = methods.build("pgn", make_backbone("vit"), C, num_prompts=4, library_size=8, width=2)
    model.train()(images)  # move the BN running statistics away from their init
    methods.save(model.eval(), tmp_path / "pgn")
    loaded = methods.load(tmp_path / "pgn", make_backbone("vit")).eval()
    assert loaded.method_config == model.method_config
    assert torch.equal(loaded(images), model(images))


def test_bad_backbones_and_options_are_refused() -> None:
    with pytest.raises(ValueError, match="VisionTransformer"):
        methods.build("pgn", make_backbone("resnet"), C)
    with pytest.raises(ValueError, match=r"num_prompts must be in \[1, 64\]"):
        methods.build("pgn", make_backbone("vit"), C, num_prompts=65, placement="replace")
    with pytest.raises(ValueError, match="option 'placement' is 'above'.*'below' or 'replace'"):
        methods.build("pgn", make_backbone("vit"), C, placement="above")
