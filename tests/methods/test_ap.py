"""AP: identity at δ = 0, no autograd before the layer, the β-shift link to norm tuning,
channel axes per layout, sequence length, layer errors, paper-scale counts; split_at."""

from __future__ import annotations

import pytest
import timm
import torch
from tiny import IMAGE_SIZE, TINY_BACKBONES, make_backbone
from torch import nn

from visprompt import methods
from visprompt.backbones import get_layer, pooled_features, split_at, split_points, stage_points

C = 5


def ap(kind_or_backbone: str | nn.Module, layer: str, granularity: str = "full") -> nn.Module:
    bb = make_backbone(kind_or_backbone) if isinstance(kind_or_backbone, str) else kind_or_backbone
    return methods.build(
        "ap", bb, C, layer=layer, granularity=granularity, image_size=IMAGE_SIZE
    ).eval()


def probe_with_head_of(model: methods.AdaptedModel, backbone: nn.Module) -> nn.Module:
    """A linear probe on `backbone` sharing `model`'s head."""
    probe = methods.build("linear_probe", backbone, C).eval()
    probe.head.load_state_dict(model.head.state_dict())
    return probe


def unit_layer_scale(bb: nn.Module) -> nn.Module:
    """ConvNeXt initialises its layer scale at 1e-6, which hides any change inside a block;
    a trained one is O(1)."""
    with torch.no_grad():
        for name, p in bb.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
    return bb


def convnext() -> nn.Module:
    return unit_layer_scale(make_backbone("convnext"))


def convnext_channels_last() -> nn.Module:
    """ConvNeXt whose blocks normalise in NHWC (LayerNorm + Linear MLP, conv_mlp=False)."""
    torch.manual_seed(0)
    model = timm.create_model(
        "convnext_atto", depths=(1, 1, 1, 1), dims=(16, 32, 48, 64), conv_mlp=False
    )
    return unit_layer_scale(model.eval())


@pytest.mark.parametrize(
    ("kind", "layer"),
    [
        ("resnet", "layer3"),
        ("resnet", "layer4.1"),
        ("resnet", "layer2.0.bn1"),
        ("vit", "blocks.1"),
        ("vit", "patch_embed"),
        ("vit_reg", "blocks.0"),
        ("vit_avg", "blocks.3"),
        ("convnext", "stages.2"),
    ],
)
@pytest.mark.parametrize("granularity", ["full", "channel"])
def test_zero_prompt_equals_linear_probe(
    kind: str, layer: str, granularity: str, images: torch.Tensor
) -> None:
    model = ap(kind, layer, granularity)
    assert not model.prompt.delta.any()
    assert torch.equal(model(images), probe_with_head_of(model, make_backbone(kind))(images))


def _saved_tensor_count(fn: callable) -> int:
    count = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal count
        count += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return count


@pytest.mark.parametrize(("kind", "layer"), [("resnet", "layer3"), ("vit", "blocks.2")])
def test_nothing_before_the_layer_records_autograd(
    kind: str, layer: str, images: torch.Tensor
) -> None:
    model = ap(kind, layer)
    order: list[tuple[str, bool]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o, n=n: order.append((n, o.requires_grad)))
        for n, m in model.backbone.named_modules()
        if n
    ]
    model(images).sum().backward()
    for h in hooks:
        h.remove()
    names = [n for n, _ in order]
    at = names.index(layer)
    assert not any(grad for _, grad in order[: at + 1]), order[: at + 1]  # raw output: no δ
    assert all(grad for _, grad in order[at + 1 :]), order[at + 1 :]

    prefix, suffix = model.split_for_cache()
    with torch.no_grad():
        cached = prefix(images)
    whole = _saved_tensor_count(lambda: model(images))
    after_layer = _saved_tensor_count(lambda: suffix(cached))
    assert whole == after_layer > 0  # the prefix stores no activation for backward


def test_deeper_layer_stores_fewer_activations(images: torch.Tensor) -> None:
    counts = [
        _saved_tensor_count(lambda layer=layer: ap("resnet", layer)(images))
        for layer in ("layer1", "layer2", "layer3", "layer4")
    ]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


@pytest.mark.parametrize(
    ("make", "norm"),
    [
        (lambda: make_backbone("resnet"), "layer3.1.bn2"),
        (lambda: make_backbone("vit"), "blocks.1.norm1"),
        (lambda: make_backbone("vit_avg"), "fc_norm"),
        (convnext, "stages.2.blocks.0.norm"),  # LayerNorm2d, NCHW
        (convnext_channels_last, "stages.2.blocks.0.norm"),  # LayerNorm on NHWC
    ],
    ids=["resnet-bn", "vit-ln", "vit_avg-fc_norm", "convnext-ln2d", "convnext-nhwc-ln"],
)
def test_channel_prompt_after_a_norm_equals_shifting_its_beta(
    make: callable, norm: str, images: torch.Tensor
) -> None:
    model = ap(make(), norm, "channel")
    delta = torch.randn(model.prompt.delta.shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model.prompt.delta.copy_(delta)
    shifted = make()
    with torch.no_grad():
        get_layer(shifted, norm).bias.add_(delta)
    torch.testing.assert_close(
        model(images), probe_with_head_of(model, shifted)(images), rtol=0, atol=1e-5
    )
    assert not torch.allclose(model(images), probe_with_head_of(model, make())(images))


def test_channel_axis_follows_the_layout() -> None:
    nchw = ap("convnext", "stages.2", "channel").prompt
    nhwc = ap(convnext_channels_last(), "stages.2.blocks.0.norm", "channel").prompt
    tokens = ap("vit", "blocks.1", "channel").prompt
    assert nchw.broadcast_shape == (48, 1, 1)
    assert nhwc.broadcast_shape == (1, 1, 48)  # (H, W, C) inside the block
    assert tokens.broadcast_shape == (1, 64)
    assert ap(convnext_channels_last(), "stages.2", "channel").prompt.broadcast_shape == (48, 1, 1)
    torch.manual_seed(0)
    name, kwargs = TINY_BACKBONES["vit"]
    dynamic = timm.create_model(name, dynamic_img_size=True, **kwargs).eval()  # NHWC patches
    assert ap(dynamic, "patch_embed", "channel").prompt.broadcast_shape == (1, 1, 64)


@pytest.mark.parametrize("kind", ["vit", "vit_reg", "vit_avg"])
def test_sequence_length_unchanged(kind: str, images: torch.Tensor) -> None:
    def block_shapes(model: nn.Module, blocks: nn.Module) -> list[torch.Size]:
        shapes: list[torch.Size] = []
        hooks = [b.register_forward_hook(lambda m, i, o: shapes.append(o.shape)) for b in blocks]
        model(images)
        for h in hooks:
            h.remove()
        return shapes

    bare = make_backbone(kind)
    model = ap(kind, "blocks.1")
    prompted = block_shapes(model, model.backbone.blocks)
    assert prompted == block_shapes(bare, bare.blocks)
    tokens = bare.patch_embed.num_patches + bare.num_prefix_tokens
    assert prompted[0][1] == tokens and model.prompt.delta.shape == (tokens, bare.embed_dim)


def test_layer_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"unknown layer 'layer9'.*layer1, layer1\.0"):
        ap("resnet", "layer9")
    with pytest.raises(ValueError, match="ap needs `layer`.*layer3"):
        methods.build("ap", make_backbone("resnet"), C)
    with pytest.raises(ValueError, match="option 'granularity' is 'pixel'"):
        ap("resnet", "layer3", "pixel")
    # A 32 px ViT is probed at the size its patch embedding was built for (no option needed).
    probed = methods.build("ap", make_backbone("vit"), C, layer="blocks.1")
    assert tuple(probed.prompt.delta.shape[-2:]) == (65, 64)


def test_layer_inside_a_block_trains_without_cache_and_says_why(images: torch.Tensor) -> None:
    with pytest.warns(UserWarning, match=r"no prefix cache for layer 'layer3\.1\.bn2'.*inside"):
        assert ap("resnet", "layer3.1.bn2").split_for_cache() is None
    assert ap("resnet", "layer3.1").split_for_cache() is not None


def test_paper_scale_parameter_counts() -> None:
    """ResNet-50 `layer4` at 224: 2048·7·7 = 100,352 (full), 2048 (channel); ViT-B/16
    `blocks.2`: 197·768 = 151,296 (full); each plus the head Linear(D, 10).

    Counts do not depend on values: the backbones are allocated uninitialised (fast).
    """
    resnet50 = timm.create_model("resnet50", device="meta").to_empty(device="cpu")
    for granularity, prompt in (("full", 100_352), ("channel", 2048)):
        model = methods.build("ap", resnet50, 10, layer="layer4", granularity=granularity)
        assert model.prompt.delta.numel() == prompt
        assert methods.count_parameters(model)["trainable"] == prompt + 2048 * 10 + 10
    vit_b = timm.create_model("vit_base_patch16_224", device="meta").to_empty(device="cpu")
    model = methods.build("ap", vit_b, 10, layer="blocks.2")
    assert tuple(model.prompt.delta.shape) == (197, 768)
    assert methods.count_parameters(model)["trainable"] == 151_296 + 768 * 10 + 10


@pytest.mark.parametrize("kind", ["resnet", "vit", "vit_reg", "vit_avg", "convnext", "mobilenet"])
def test_split_at_every_point_reproduces_pooled_features(kind: str, images: torch.Tensor) -> None:
    bb = make_backbone(kind)
    reference = pooled_features(bb, images)
    points = split_points(bb)
    assert len(points) > 4
    # timm's feature stages are split points, shallow to deep; every layer of a stage is too
    stages = stage_points(bb)
    assert stages == [f["module"] for f in bb.feature_info][-len(stages) :]
    assert set(stages) <= set(points) and len(stages) >= 4
    for point in points:
        prefix, suffix = split_at(bb, point)
        assert torch.equal(suffix(prefix(images)), reference), point
        assert not list(prefix.parameters()) and not list(suffix.parameters())


def test_split_at_refuses_what_it_cannot_cut() -> None:
    with pytest.raises(ValueError, match=r"inside a block.*layer3\.1"):
        split_at(make_backbone("resnet"), "layer3.1.bn2")
    with pytest.raises(ValueError, match="unknown layer"):
        split_at(make_backbone("vit"), "blocks.7")
    with pytest.raises(ValueError, match="not a timm model with forward_features"):
        split_at(nn.Sequential(nn.Conv2d(3, 4, 3)), "0")


class _Residual(nn.Module):
    """A timm-style model whose features add a shortcut around its two modules: no chain."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.num_features = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1), 3
        self.pretrained_cfg = {"input_size": (3, 8, 8), "mean": (0,) * 3, "std": (1,) * 3}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x.mean((2, 3))


def test_features_that_are_no_chain_are_refused_and_ap_says_why() -> None:
    model = _Residual().eval()
    with pytest.raises(ValueError, match="not a chain of its modules"):
        split_points(model)
    with pytest.warns(UserWarning, match="no prefix cache for layer 'a'.*not a chain"):
        assert methods.build("ap", model, 2, layer="a", image_size=8).split_for_cache() is None


def test_split_points_trace_leaves_the_backbone_untouched() -> None:
    bb = make_backbone("mobilenet").train()
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    split_points(bb)
    assert bb.training and all(torch.equal(v, bb.state_dict()[k]) for k, v in before.items())
