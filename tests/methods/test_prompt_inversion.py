"""Prompt inversion: exact token reproduction, token/RGB agreement, the client/server split.

RGB deployment needs 3·P² >= D: these tests use a patch-8 ViT at 32 px (3·64 = 192 >= D = 64,
a 4×4 patch grid; L = 4 prompts fill one extra patch row under the image: 40×32 px inputs).
"""

from __future__ import annotations

import pytest
import timm
import torch
from tiny import make_backbone
from torch.utils.data import TensorDataset

from visprompt import methods
from visprompt.methods import vit_tokens
from visprompt.methods.pgn import PromptGenerationNetwork
from visprompt.methods.pgn.inversion import (
    PatchInverter,
    PromptClient,
    PromptServer,
    deployment_metrics,
    inversion_agreement,
    paste_patches,
    to_uint8,
)

CLASSES, L = 4, 4


def invertible_vit(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=64,
        depth=2,
        num_heads=2,
        num_classes=10,
    ).eval()


def quadrant_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[0, 1] images whose class is the quadrant holding a bright 8×8 square."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 32, 32, generator=g) * 0.4
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    offsets = torch.randint(0, 9, (n, 2), generator=g)
    for i, (label, (dy, dx)) in enumerate(zip(labels.tolist(), offsets.tolist(), strict=True)):
        top, left = 16 * (label // 2) + dy, 16 * (label % 2) + dx
        images[i, :, top : top + 8, left : left + 8] = 1.0
    return images, labels


def build_pgn(seed: int = 0, **options) -> PromptGenerationNetwork:
    return methods.build(
        "pgn", invertible_vit(seed), CLASSES, num_prompts=L, library_size=16, width=4, **options
    )


@pytest.fixture(scope="module", params=["below", "replace"])
def trained_pgn(request) -> PromptGenerationNetwork:
    torch.manual_seed(0)
    model = build_pgn(placement=request.param).train()
    opt = torch.optim.Adam(model.trainable_parameters(), lr=3e-3)
    for step in range(40):
        images, labels = quadrant_images(32, seed=step)
        loss = torch.nn.functional.cross_entropy(model((images - 0.5) / 0.5), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_inverted_patch_reproduces_its_token() -> None:
    vit = invertible_vit()
    inverter = PatchInverter.from_vit(vit)
    tokens = torch.randn(3, L, 64)
    patches = inverter(tokens)
    assert patches.shape == (3, L, 3, 8, 8)
    image = paste_patches(torch.randn(3, 3, 32, 32), patches, range(12, 16), grid_width=4)
    embedded = vit_tokens.embed_patches(vit, image)
    assert torch.allclose(embedded[:, 12:], tokens, atol=1e-4)


def test_inversion_needs_wide_enough_patches() -> None:
    with pytest.raises(ValueError, match=r"3·P² >= D"):
        PatchInverter.from_vit(make_backbone("vit"))  # patch 4: 48 < D = 64


def test_token_and_rgb_paths_agree(trained_pgn: PromptGenerationNetwork, record_property) -> None:
    images, labels = quadrant_images(512, seed=1000)
    result = inversion_agreement(trained_pgn, images, labels)
    for key, value in result.items():
        record_property(key, value)
    print("\nprompt inversion (512 test images):", result)
    assert result["token_top1"] > 0.5  # learned something (chance: 0.25)
    assert result["agreement"] >= 0.999
    assert result["rgb_top1"] == pytest.approx(result["token_top1"], abs=0.002)
    # clipping + 8-bit quantisation is measured, not hidden: values exist and are consistent
    assert 0.0 <= result["agreement_uint8"] <= 1.0 and 0.0 <= result["rgb_uint8_top1"] <= 1.0
    assert result["top1_drop_uint8"] == pytest.approx(
        result["token_top1"] - result["rgb_uint8_top1"]
    )


def test_deployment_metrics_on_a_uint8_dataset(trained_pgn: PromptGenerationNetwork) -> None:
    images, labels = quadrant_images(64, seed=2000)
    dataset = TensorDataset(to_uint8(images), labels)
    config = {"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.5,) * 3}
    result = deployment_metrics(trained_pgn, dataset, config, batch_size=16)
    direct = inversion_agreement(trained_pgn, to_uint8(images).float() / 255, labels)
    assert set(result) == {f"rgb_{k}" if not k.startswith("rgb_") else k for k in direct} - {
        "rgb_token_top1"
    }
    assert result["rgb_agreement"] == direct["agreement"] >= 0.99
    assert result["rgb_uint8_top1"] == direct["rgb_uint8_top1"]
    with pytest.raises(ValueError, match=r"3·P² >= D"):
        deployment_metrics(
            methods.build("pgn", make_backbone("vit"), CLASSES, num_prompts=4), dataset, config
        )


def test_client_needs_only_the_patch_embedding(trained_pgn: PromptGenerationNetwork) -> None:
    client = PromptClient.from_pgn(trained_pgn)
    own = {f"generator.{k}" for k in trained_pgn.generator.state_dict()}
    assert set(client.state_dict()) == own | {"inverter.pinv", "inverter.bias"}
    images, _ = quadrant_images(8, seed=7)
    prompted = client(images)
    if trained_pgn.layout.placement == "below":
        assert prompted.shape == (8, 3, 40, 32)
        assert torch.allclose(prompted[:, :, :32], images, atol=1e-6)  # the whole image
        assert prompted[:, :, 32:].std() > 0.01  # a prompt row, not the blank fill
    else:
        assert prompted.shape == (8, 3, 32, 32)
        assert torch.allclose(prompted[:, :, :24], images[:, :, :24], atol=1e-6)
        assert not torch.allclose(prompted[:, :, 24:], images[:, :, 24:])
    server = PromptServer.from_pgn(trained_pgn)
    as_uint8 = to_uint8(prompted)
    assert as_uint8.dtype == torch.uint8
    assert torch.allclose(server(as_uint8), server(as_uint8.float() / 255), atol=1e-5)


def test_server_leaves_the_trained_backbone_as_it_was() -> None:
    model = build_pgn()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    server = PromptServer.from_pgn(model)
    assert tuple(server.backbone.patch_embed.img_size) == (40, 32)
    assert tuple(model.backbone.patch_embed.img_size) == (32, 32)
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())
