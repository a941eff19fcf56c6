"""AdaViPro: binary masks, the VP special case, gradients, temperature schedule, sizes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny import IMAGE_SIZE, make_backbone

from visprompt import methods
from visprompt.methods.adavipro import default_region_size, edge_map

P, R, E, C = 4, 4, 16, 5


def build(kind: str = "vit", **options) -> methods.AdaptedModel:
    defaults = dict(prompt_size=P, image_size=IMAGE_SIZE, region_size=R, embed_dim=E)
    return methods.build("adavipro", make_backbone(kind), C, **(defaults | options))


def test_registered_and_defaults_scale_with_image_size() -> None:
    assert "adavipro" in methods.available()
    assert default_region_size(224) == 32 and default_region_size(32) == 4
    model = methods.build("adavipro", make_backbone("resnet"), C, image_size=IMAGE_SIZE)
    assert model.method_config.prompt_size == 4 and model.method_config.region_size == 4


@pytest.mark.parametrize("edge_channels,c", [("gray", 1), ("rgb", 3)])
@pytest.mark.parametrize("kind,d", [("vit", 64), ("resnet", 128)])
def test_parameter_count_matches_formula(kind: str, d: int, edge_channels: str, c: int) -> None:
    model = build(kind, edge_channels=edge_channels)
    s = IMAGE_SIZE
    expected = 12 * P * (s - P) + (c * R * R * E + E) + (2 * E + 2) + (d * C + C)
    counts = methods.count_parameters(model)
    backbone_total = sum(q.numel() for q in model.backbone.parameters())
    assert counts["trainable"] == expected
    assert counts["total"] == expected + backbone_total


def test_mask_is_binary_and_deterministic_at_eval(images: torch.Tensor) -> None:
    model = build().eval()
    first, second = model.mask(images), model.mask(images)
    assert first.shape == (4, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(first, second)
    # constant over each region (nearest upsampling of the region grid)
    regions = first.unfold(2, R, R).unfold(3, R, R)
    assert torch.equal(regions.amax(dim=(-1, -2)), regions.amin(dim=(-1, -2)))


def test_training_mask_is_hard_and_sampled(images: torch.Tensor) -> None:
    model = build().train()
    torch.manual_seed(0)
    masks = [model.mask(images) for _ in range(5)]
    assert all(set(m.unique().tolist()) <= {0.0, 1.0} for m in masks)
    assert any(not torch.equal(masks[0], m) for m in masks[1:])  # Gumbel noise at τ = 5


def test_all_ones_mask_reproduces_vp_pad(images: torch.Tensor) -> None:
    ada = build().eval()
    vp = methods.build("vp", ada.backbone, C, design="pad", prompt_size=P, image_size=IMAGE_SIZE)
    vp.prompt.load_state_dict(ada.prompt.state_dict())
    vp.head.load_state_dict(ada.head.state_dict())
    with torch.no_grad():  # force "apply" everywhere: logits (-10, +10) for every region
        ada.mask_generator.logits.weight.zero_()
        ada.mask_generator.logits.bias.copy_(torch.tensor([-10.0, 10.0]))
    assert torch.equal(ada.mask(images), torch.ones(4, 1, IMAGE_SIZE, IMAGE_SIZE))
    assert torch.equal(ada.prompted(images), vp.eval().prompted(images))
    assert torch.equal(ada(images), vp(images))


def test_edge_map_is_the_fixed_laplacian() -> None:
    x = torch.zeros(1, 3, 5, 5)
    x[:, :, 2, 2] = 3.0
    gray = edge_map(x, "gray")
    assert gray.shape == (1, 1, 5, 5)
    assert gray[0, 0, 2, 2] == -12.0 and gray[0, 0, 1, 2] == 3.0 and gray[0, 0, 0, 0] == 0.0
    assert torch.equal(edge_map(x, "rgb"), gray.expand(1, 3, 5, 5))
    assert torch.equal(
        edge_map(torch.full((1, 3, 4, 4), 2.0), "gray")[:, :, 1:3, 1:3], torch.zeros(1, 1, 2, 2)
    )


def test_gradients_reach_mask_generator_and_backbone_stays_frozen(images: torch.Tensor) -> None:
    model = build().train()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    opt = torch.optim.SGD(model.param_groups(0.1, 0.0), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(images), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, q in model.mask_generator.named_parameters():
        assert q.grad is not None and q.grad.abs().sum() > 0, name
    assert model.prompt.top.grad.abs().sum() > 0 and model.head.weight.grad.abs().sum() > 0
    assert all(q.grad is None for q in model.backbone.parameters())
    opt.step()
    assert not model.backbone.training
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())


def test_param_groups_split_learning_rates() -> None:
    model = build(generator_lr_scale=0.025)
    groups = model.param_groups(40.0, 0.0)
    assert [g["lr"] for g in groups] == [40.0, 1.0]
    ids = [id(q) for g in groups for q in g["params"]]
    assert sorted(ids) == sorted(id(q) for q in model.trainable_parameters())
    assert {id(q) for q in groups[1]["params"]} == {
        id(q) for q in model.mask_generator.parameters()
    }


def test_temperature_schedule_survives_save_load_and_resume(tmp_path) -> None:
    model = build(tau0=5.0, tau_decay=0.98)
    for epoch in range(4):
        model.on_epoch_start(epoch, None)
        assert math.isclose(model.temperature, 5.0 * 0.98**epoch)
    state = model.extra_state()
    assert state == {"epoch": 3, "temperature": pytest.approx(5.0 * 0.98**3)}
    resumed = build(tau0=5.0, tau_decay=0.98)  # checkpoint/resume: extra_state round trip
    resumed.load_extra_state(state)
    assert resumed.temperature == model.temperature

    methods.save(model, tmp_path / "ada")
    loaded = methods.load(tmp_path / "ada", make_backbone("vit")).eval()
    assert loaded.temperature == model.temperature and loaded.method_config == model.method_config
    x = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.equal(loaded(x), model.eval()(x))


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="region_size must divide"):
        build(region_size=5)
    with pytest.raises(ValueError, match="option 'edge_channels' is 'hsv'"):
        build(edge_channels="hsv")
    with pytest.raises(ValueError, match="resize inputs"):
        build().mask(torch.zeros(1, 3, 16, 16))


def test_temperature_survives_fit_checkpoint_and_resume(tmp_path) -> None:
    """Through the training loop: the checkpoint stores the schedule; a resumed run restores it."""
    from visprompt.data.shards import ShardDataset, write_classes, write_split
    from visprompt.training import Preprocess, TrainConfig, fit

    rng = torch.Generator().manual_seed(0)
    for split, n in (("train", 16), ("val", 8)):
        images = torch.randint(0, 256, (n, IMAGE_SIZE, IMAGE_SIZE, 3), generator=rng)
        write_split(
            tmp_path / "shards",
            split,
            images.to(torch.uint8).numpy(),
            (torch.arange(n) % C).numpy(),
        )
    write_classes(tmp_path / "shards", [str(i) for i in range(C)])
    data = [ShardDataset(tmp_path / "shards", s) for s in ("train", "val")]
    preprocess = Preprocess(IMAGE_SIZE, (0.5,) * 3, (0.5,) * 3)
    config = TrainConfig(epochs=2, batch_size=8, lr=0.01, checkpoint_dir=str(tmp_path / "ckpt"))

    torch.manual_seed(0)
    model = build()
    fit(model, *data, preprocess, config)
    state = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    last = json.loads(state["extra_state"])
    assert last == {"epoch": 1, "temperature": pytest.approx(5.0 * 0.98)}

    torch.manual_seed(0)
    resumed = build()
    fit(resumed, *data, preprocess, config)  # finished run in the checkpoint: restored, no epoch
    assert resumed.extra_state() == model.extra_state()
