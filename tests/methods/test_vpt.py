"""VPT: token counts per block, deep replacement, init, SPT prompts, pooling, refusals."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from tiny import make_backbone

from visprompt import methods
from visprompt.methods import vit_tokens as vt
from visprompt.methods.vpt import uniform_bound

C, P = 5, 3
VITS = ("vit", "vit_reg", "vit_avg")


def block_inputs(model: methods.AdaptedModel, images: torch.Tensor) -> list[torch.Tensor]:
    """The token tensor entering every block, recorded with forward pre-hooks."""
    seen: list[torch.Tensor] = []
    hooks = [
        b.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
        for b in model.backbone.blocks
    ]
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("kind", VITS)
def test_token_helpers_reproduce_the_backbone(kind: str, images: torch.Tensor) -> None:
    vit = make_backbone(kind)
    with torch.no_grad():
        tokens = vt.start_blocks(vit, vt.prefix_and_pos(vit, vt.embed_patches(vit, images)))
        logits = vt.head_from_tokens(vit, vt.run_blocks(vit, tokens), 0, False, pre_logits=False)
        assert torch.equal(logits, vit(images))


@pytest.mark.parametrize("kind", VITS)
@pytest.mark.parametrize("variant", ["shallow", "deep"])
def test_sequence_grows_by_p_at_every_block(kind: str, variant: str, images) -> None:
    bb = make_backbone(kind)
    expected = bb.patch_embed.num_patches + bb.num_prefix_tokens + P
    model = methods.build("vpt", bb, C, variant=variant, num_prompts=P).eval()
    assert [t.shape[1] for t in block_inputs(model, images)] == [expected] * len(bb.blocks)


@pytest.mark.parametrize("kind", ["vit", "vit_reg"])
def test_prompts_sit_after_the_prefix_without_position_embedding(kind: str, images) -> None:
    model = methods.build("vpt", make_backbone(kind), C, variant="shallow", num_prompts=P).eval()
    first = block_inputs(model, images)[0]
    k = model.backbone.num_prefix_tokens
    assert torch.equal(first[:, k : k + P], model.prompts[0].expand(len(images), -1, -1))
    bare = vt.prefix_and_pos(model.backbone, vt.embed_patches(model.backbone, images))
    assert torch.equal(first[:, :k], bare[:, :k])
    assert torch.equal(first[:, k + P :], bare[:, k:])


def test_deep_prompts_are_replaced_not_accumulated(images: torch.Tensor) -> None:
    model = methods.build("vpt", make_backbone("vit"), C, variant="deep", num_prompts=P).eval()
    before = block_inputs(model, images)
    for i, tokens in enumerate(before):  # each block sees exactly its own layer's prompts
        assert torch.equal(tokens[:, 1 : 1 + P], model.prompts[i].expand(len(images), -1, -1))
    with torch.no_grad():
        model.prompts[2].add_(1.0)
    after = block_inputs(model, images)
    assert all(torch.equal(a, b) for a, b in zip(after[:2], before[:2], strict=True))
    assert not torch.equal(after[2], before[2])
    shallow = methods.build("vpt", make_backbone("vit"), C, variant="shallow", num_prompts=P)
    second = block_inputs(shallow.eval(), images)[1]
    assert not torch.equal(second[:, 1 : 1 + P], shallow.prompts[0].expand(len(images), -1, -1))


def test_parameter_counts_follow_the_formula() -> None:
    bb = make_backbone("vit")
    d, blocks, head = 64, 4, 64 * C + C
    shallow = methods.build("vpt", bb, C, variant="shallow", num_prompts=P)
    deep = methods.build("vpt", bb, C, variant="deep", num_prompts=P)
    assert methods.count_parameters(shallow)["trainable"] == P * d + head
    assert methods.count_parameters(deep)["trainable"] == blocks * P * d + head


def test_vit_b16_deep_50_prompts_is_460800() -> None:
    with torch.device("meta"):  # shapes only: no weight initialisation, no forward
        vit_b = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
    model = methods.build("vpt", vit_b, C, variant="deep", num_prompts=50)
    assert model.prompts.numel() == 460_800 == 12 * 50 * 768
    assert methods.count_parameters(model)["trainable"] == 460_800 + 768 * C + C
    assert uniform_bound(vit_b) == pytest.approx(0.0625)


def test_random_init_is_uniform_within_the_bound() -> None:
    torch.manual_seed(0)
    model = methods.build("vpt", make_backbone("vit"), C, variant="deep", num_prompts=50)
    bound = math.sqrt(6 / (3 * 4 * 4 + 64))
    values = model.prompts.detach()
    assert values.abs().max() <= bound and values.abs().max() > 0.95 * bound
    assert values.mean().abs() < 0.05 * bound


def test_spt_init_prompts_are_the_initial_prompts(tmp_path, images: torch.Tensor) -> None:
    init = torch.randn(4, P, 64)
    model = methods.build(
        "vpt", make_backbone("vit"), C, variant="deep", num_prompts=P, init="spt", init_prompts=init
    )
    assert torch.equal(model.prompts.detach(), init)
    assert "init_prompts" not in model.config()["options"]
    init.zero_()  # the model holds its own copy
    assert model.prompts.abs().sum() > 0
    methods.save(model.eval(), tmp_path / "spt")
    loaded = methods.load(tmp_path / "spt", make_backbone("vit")).eval()
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))


def test_spt_init_errors_are_clear() -> None:
    bb = make_backbone("vit")
    with pytest.raises(ValueError, match="needs init_prompts"):
        methods.build("vpt", bb, C, init="spt")
    with pytest.raises(ValueError, match=r"expected \(1, 3, 64\)"):
        methods.build("vpt", bb, C, num_prompts=P, init="spt", init_prompts=torch.zeros(4, P, 64))
    with pytest.raises(ValueError, match="use init='spt'"):
        methods.build("vpt", bb, C, init_prompts=torch.zeros(1, 10, 64))
    with pytest.raises(ValueError, match="vpt option 'variant' is 'medium'"):
        methods.build("vpt", bb, C, variant="medium")


def test_pooling_choice_matters_for_average_pooling_only(images: torch.Tensor) -> None:
    outputs = {}
    for kind in ("vit", "vit_avg"):
        for include in (False, True):
            torch.manual_seed(0)
            model = methods.build(
                "vpt", make_backbone(kind), C, num_prompts=P, pool_prompts=include
            ).eval()
            with torch.no_grad():
                outputs[kind, include] = model(images)
    assert torch.equal(outputs["vit", False], outputs["vit", True])
    assert not torch.allclose(outputs["vit_avg", False], outputs["vit_avg", True])


def test_excluded_prompts_pool_like_the_backbone(images: torch.Tensor) -> None:
    vit = make_backbone("vit_avg")
    tokens = torch.randn(4, 64 + P, 64)
    pooled = vt.head_from_tokens(vit, tokens, P, include_prompts_in_pool=False)
    assert torch.allclose(pooled, vit.fc_norm(vit.norm(tokens)[:, P:].mean(1)))
    included = vt.head_from_tokens(vit, tokens, P, include_prompts_in_pool=True)
    assert torch.allclose(included, vit.fc_norm(vit.norm(tokens).mean(1)))


def test_prompt_dropout_only_in_training(images: torch.Tensor) -> None:
    model = methods.build("vpt", make_backbone("vit"), C, num_prompts=P, dropout=0.5)
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(images), model(images))
    model.eval()
    assert torch.equal(model(images), model(images))


@pytest.mark.parametrize("kind", ["resnet", "convnext"])
def test_cnn_is_refused_clearly(kind: str) -> None:
    with pytest.raises(ValueError, match="'vpt' needs a VIT backbone"):
        methods.build("vpt", make_backbone(kind), C)
