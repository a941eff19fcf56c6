"""Token collection and the strategies end to end on tiny real timm ViTs (32 px)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import make_backbone

from visprompt import methods
from visprompt.data.shards import write_split
from visprompt.prompt_init import (
    InitConfig,
    ShardStream,
    TensorImages,
    build_prompt_inits,
    inertia,
    layer_tokens,
    load_metadata,
    load_prompts,
    pool_windows,
    save_prompt_init,
)
from visprompt.training import Preprocess

STRATEGIES = ("kmeans", "random", "mean_pool", "max_pool")


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def run(vit, data, configs, budget=1 << 20, batch=8, indexed=False):
    """Streamed (a plain list of batches) or, with `indexed`, sampled by index."""
    images = TensorImages(data, batch_size=batch) if indexed else data.split(batch)
    return build_prompt_inits(vit, images, configs, memory_budget_bytes=budget, progress=False)


def all_tokens(vit, data, layer):
    """Every token entering `layer` for the whole dataset, (images, N, D)."""
    return torch.cat([dict(layer_tokens(vit, b, layer))[layer] for b in data.split(8)])


@pytest.mark.parametrize("kind", ["vit", "vit_reg"])
def test_layer_tokens_are_the_inputs_of_each_block(kind: str, data: torch.Tensor) -> None:
    vit = make_backbone(kind)
    x = data[:2]
    tokens = dict(layer_tokens(vit, x, 3))
    assert torch.equal(tokens[0], vit.patch_embed(x))  # no CLS, no position embedding
    outputs = vit.forward_intermediates(
        x, indices=[0, 1, 2], output_fmt="NLC", intermediates_only=True
    )
    for layer in (1, 2, 3):  # block l-1 output, prefix (CLS + 4 registers) removed
        assert tokens[layer].shape == (2, 64, 64)
        torch.testing.assert_close(tokens[layer], outputs[layer - 1])


@pytest.mark.parametrize("indexed", [False, True])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_shapes_per_layer_strategy_and_variant(
    strategy: str, indexed: bool, data: torch.Tensor
) -> None:
    vit = make_backbone("vit")
    configs = {
        "deep": InitConfig(strategy, num_prompts=3, variant="deep"),
        "shallow": InitConfig(strategy, num_prompts=5, variant="shallow"),
    }
    out = run(vit, data, configs, indexed=indexed)
    assert out["deep"].prompts.shape == (4, 3, 64)
    assert out["shallow"].prompts.shape == (1, 5, 64)
    meta = out["deep"].metadata
    assert meta["layers"] == [0, 1, 2, 3] and meta["images_used"] == 24
    assert meta["tokens_per_layer"]["3"] == 24 * 64
    assert set(meta["seconds_per_layer"]) == {"0", "1", "2", "3"}
    assert out["shallow"].metadata["layers"] == [0]
    assert torch.isfinite(out["deep"].prompts).all()


@pytest.mark.parametrize("indexed", [False, True])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_deterministic_by_seed(strategy: str, indexed: bool, data: torch.Tensor) -> None:
    vit = make_backbone("vit")
    a = run(vit, data, {"a": InitConfig(strategy, 3, seed=1)}, indexed=indexed)["a"].prompts
    b = run(vit, data, {"a": InitConfig(strategy, 3, seed=1)}, indexed=indexed)["a"].prompts
    c = run(vit, data, {"a": InitConfig(strategy, 3, seed=2)}, indexed=indexed)["a"].prompts
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("indexed", [False, True])
@pytest.mark.parametrize("strategy", ["random", "mean_pool", "max_pool"])
def test_sampled_prompts_are_members_of_the_token_set(
    strategy: str, indexed: bool, data: torch.Tensor
) -> None:
    vit = make_backbone("vit_reg")
    out = run(vit, data, {"s": InitConfig(strategy, 6)}, indexed=indexed)["s"]
    prompts = out.prompts
    distinct = {tuple(r.tolist()) for layer in prompts for r in layer}
    assert len(distinct) == 4 * 6  # drawn without replacement
    if indexed:  # only the images holding the drawn tokens ran
        assert out.metadata["images_forwarded"] <= 4 * 6
        assert out.metadata["images_used"] == 24
    for layer in range(4):
        tokens = all_tokens(vit, data, layer)
        if strategy != "random":
            tokens = pool_windows(tokens, 6, strategy.removesuffix("_pool"))
        flat = tokens.reshape(-1, 64)
        for row in prompts[layer]:
            assert bool(torch.isclose(flat, row, atol=1e-6).all(1).any()), (layer, strategy)


def test_kmeans_prompts_beat_seeds_and_random_tokens(data: torch.Tensor) -> None:
    vit = make_backbone("vit")
    configs = {"k": InitConfig("kmeans", 8), "r": InitConfig("random", 8)}
    out = run(vit, data, configs, budget=8 << 20)  # holds every token: k-means on all
    for layer in range(4):
        flat = all_tokens(vit, data, layer).reshape(-1, 64)
        kmeans_obj = inertia(flat, out["k"].prompts[layer])
        assert kmeans_obj < inertia(flat, out["r"].prompts[layer])
        assert out["k"].metadata["layer_stats"][str(layer)]["rows_kept"] == len(flat)


def test_memory_stays_under_the_budget_on_a_larger_dataset() -> None:
    vit = make_backbone("vit")
    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    budget = 200_000  # bytes; all tokens of all layers: 64 img * 64 tok * 64 D * 4 B * 4 layers
    assert 20 * budget < 64 * 64 * 64 * 4 * 4
    configs = {s: InitConfig(s, 4) for s in STRATEGIES}
    out = run(vit, images, configs, budget=budget, batch=16)
    meta = out["kmeans"].metadata
    assert meta["bytes_held_peak_of_pass"] <= budget
    kept = meta["layer_stats"]["0"]["rows_kept"]
    assert 4 <= kept < 64 * 64  # a subsample, as large as the budget allows
    assert kept * 4 * (64 * 4 + 4) + 3 * 4 * 4 * (64 * 4 + 4) <= budget
    with pytest.raises(ValueError, match="raise memory_budget_mb"):
        run(vit, images, configs, budget=1_000)


def test_vpt_with_spt_init_starts_from_exactly_these_prompts(data, tmp_path) -> None:
    vit = make_backbone("vit")
    init = run(vit, data, {"k": InitConfig("kmeans", 3)})["k"]
    path = save_prompt_init(tmp_path, "k", init)
    prompts = load_prompts(path)
    assert torch.equal(prompts, init.prompts)
    assert load_metadata(path)["strategy"] == "kmeans"
    model = methods.build(
        "vpt", vit, 10, variant="deep", num_prompts=3, init="spt", init_prompts=prompts
    )
    assert torch.equal(model.prompts.detach(), init.prompts)


def test_shard_stream_feeds_a_seeded_subset(tmp_path) -> None:
    rng = np.random.default_rng(0)
    write_split(
        tmp_path, "train", rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8), np.arange(10) % 2
    )
    preprocess = Preprocess(32, (0.5,) * 3, (0.5,) * 3)
    stream = ShardStream(tmp_path, "train", preprocess, batch_size=4, max_images=7, seed=1)
    batches = list(stream)
    assert stream.num_batches == 2 and [b.shape[0] for b in batches] == [4, 3]
    chosen = stream.indices()
    assert len(set(chosen.tolist())) == 7 and np.array_equal(chosen, stream.indices())
    first = torch.from_numpy(np.load(tmp_path / "images_train.npy")[chosen[:4]])
    assert torch.equal(batches[0], preprocess(first.permute(0, 3, 1, 2)))
    assert batches[0].dtype == torch.float32 and batches[0].shape[1:] == (3, 32, 32)
    out = build_prompt_inits(
        make_backbone("vit"),
        stream,
        {"r": InitConfig("random", 2)},
        memory_budget_bytes=1 << 16,
        progress=False,
    )
    assert out["r"].metadata["images_used"] == 7
