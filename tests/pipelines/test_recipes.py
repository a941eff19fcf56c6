"""Recipe dry runs: every run of every recipe builds and trains one step on CPU, offline.

A recipe with exactly the parameters and runs of an earlier one (the embedded default) is
checked to load them and is not trained twice.

Each recipe in `pipelines/*.yml` (and the embedded default, `conf/base` alone) is loaded the
way `kedro run --config <recipe>` loads it: Kedro's config loader with the project's settings,
the recipe's environment and its params as runtime params. Every backbone it names is
replaced by a stand-in of the same timm architecture, built with `pretrained=False` and, for
hub-sized models, narrow and shallow (`STAND_IN`), then goes through the backbone
pipeline's own `materialise` (from a local file) and `backbones.from_spec`. SPT inits are
built by the prompt_init library from the sizes their runs state. Each run's `TrainConfig`
is the recipe's (so its values are validated), shortened to one step of 4 images.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
import yaml
from kedro.config import OmegaConfigLoader
from torch.utils.data import TensorDataset

from visprompt import backbones, methods, prompt_init
from visprompt.pipelines import experiment
from visprompt.pipelines.prompt_init.nodes import init_configs
from visprompt.pipelines.runs import configured_runs
from visprompt.settings import CONFIG_LOADER_ARGS
from visprompt.training import Preprocess, fit
from visprompt.training.runs import parse_run, train_config
from visprompt.weights import materialise

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ["default", *sorted(p.stem for p in (ROOT / "pipelines").glob("*.yml"))]
CPU = {"accelerator": "cpu", "devices": 1, "strategy": "auto", "precision": "32-true"}
#: Narrow, shallow versions of hub-sized architectures (timm kwargs), by model-name prefix;
#: other families (already small, e.g. EfficientNet-Lite0) are built as they are.
STAND_IN = {
    "vit_": {"embed_dim": 32, "depth": 12, "num_heads": 2},  # ViT-B's depth: up to blocks.11
    "resnet": {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64]},
    "convnext": {"depths": [1, 1, 1, 1], "dims": [8, 16, 24, 32]},
}


def recipe_parameters(recipe: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(parameters as `kedro run --config pipelines/<recipe>.yml` sees them, its `run` block)."""
    run: dict[str, Any] = {}
    if recipe != "default":
        run = yaml.safe_load((ROOT / "pipelines" / f"{recipe}.yml").read_text())["run"]
    loader = OmegaConfigLoader(
        conf_source=str(ROOT / "conf"),
        env=run.get("env"),
        runtime_params=run.get("params") or {},
        **CONFIG_LOADER_ARGS,
    )
    return dict(loader["parameters"]), run


def recipe_runs(params: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The training runs the recipe's pipeline trains (a sweep pipeline lists its own)."""
    names = [run["pipeline"]] if run.get("pipeline") else str(run.get("pipelines", "")).split(",")
    own = [(params.get(name) or {}).get("runs") for name in names]
    return next((runs for runs in own if runs), params["training"]["runs"])


def _stand_in_entry(entry: dict[str, Any], weights: Path) -> dict[str, Any]:
    """`entry` with a randomly initialised stand-in saved at `weights` as its only source."""
    kwargs = dict(entry.get("model_kwargs") or {})
    if "hub" in entry["weights"]:  # hub-sized: keep the architecture, shrink it
        kwargs |= next((v for k, v in STAND_IN.items() if entry["name"].startswith(k)), {})
        kwargs.setdefault("num_classes", 16)  # a small source head (label mapping needs K >= C)
    torch.manual_seed(0)
    model = timm.create_model(entry["name"], pretrained=False, **kwargs)
    backbones.save_weights(model, weights)
    return {**entry, "model_kwargs": kwargs, "weights": ["file"], "file": str(weights)}


def _images(n: int, size: int, classes: int) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return TensorDataset(images, torch.arange(n) % classes)


def _spt_inits(
    params: dict[str, Any], runs: dict[str, Any], specs: dict[str, Any], size: int
) -> dict[str, torch.Tensor]:
    configs = init_configs(params["prompt_init"], runs)
    inits: dict[str, torch.Tensor] = {}
    for key in {backbone for backbone, _ in configs.values()}:
        model = backbones.from_spec(specs[key])
        preprocess = Preprocess.from_data_config(specs[key]["data_config"])
        batches = [preprocess(x) for x, _ in torch.utils.data.DataLoader(_images(8, size, 2), 4)]
        group = {n: c for n, (b, c) in configs.items() if b == key}
        built = prompt_init.build_prompt_inits(
            model, batches, group, memory_budget_bytes=1 << 20, progress=False
        )
        inits |= {name: result.prompts for name, result in built.items()}
    return inits


def same_as_earlier() -> dict[str, str]:
    """recipe -> the earlier recipe of RECIPES with the same parameters and runs, if any.

    A recipe that only picks a pipeline (quickstart, claims) trains exactly the default's runs
    on the default's parameters: training them again would check nothing new.
    """
    seen: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    twins = {}
    for recipe in RECIPES:
        params, run = recipe_parameters(recipe)
        runs = recipe_runs(params, run)
        twin = next((r for r, p, rs in seen if p == params and rs == runs), None)
        if twin is None:
            seen.append((recipe, params, runs))
        else:
            twins[recipe] = twin
    return twins


TWINS = same_as_earlier()


def test_every_recipe_is_an_experiment_of_its_own() -> None:
    """Each recipe names its experiment (reports, registered model) and passes its checks
    (data size against its backbones, run selections); only twins share a name."""
    names: dict[str, list[str]] = {}
    for recipe in RECIPES:
        params, _ = recipe_parameters(recipe)
        experiment.check(params, configured_runs(params))
        names.setdefault(experiment.name(params), []).append(recipe)
    assert names["digits"][0] == "default"
    for recipes in names.values():
        assert all(TWINS.get(r) == recipes[0] for r in recipes[1:]), names
    assert len(names) >= 6, names


@pytest.mark.parametrize("recipe", sorted(TWINS))
def test_a_recipe_without_own_parameters_loads_those_of_a_trained_one(recipe: str) -> None:
    params, run = recipe_parameters(recipe)
    twin_params, twin_run = recipe_parameters(TWINS[recipe])
    assert params == twin_params
    assert recipe_runs(params, run) == recipe_runs(twin_params, twin_run)


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r not in TWINS])
def test_every_run_of_the_recipe_builds_and_trains_a_step(recipe: str, tmp_path: Path) -> None:
    params, run = recipe_parameters(recipe)
    runs = recipe_runs(params, run)
    assert runs, f"{recipe}: no training runs"
    size = experiment.data_image_size(params["data_ingestion"], params["backbone"])
    classes = 10
    used = {parse_run(name, entry).backbone for name, entry in runs.items()}
    specs, hub = {}, False
    for key in sorted(used):
        entry = params["backbone"]["models"][params["backbone"]["build"][key]]
        hub |= "hub" in entry["weights"]
        stand_in = _stand_in_entry(entry, tmp_path / f"{key}-stand-in.safetensors")
        specs[key] = materialise(key, stand_in, {}, CPU, tmp_path / "specs", tmp_path / "ckpt")
    inits = _spt_inits(params, runs, specs, size)
    data = _images(4, size, classes)
    for name, entry in runs.items():
        spec = parse_run(name, entry)
        # the recipe's own training options must be valid; then one step of 4 images
        config = train_config(params["training"]["defaults"], spec.train, params["training_engine"])
        # GPU recipes state the head's group explicitly (the papers' reference settings)
        assert not hub or config.head_lr is not None, f"{recipe}, {name}: no head_lr"
        config = dataclasses.replace(
            config, **CPU, epochs=1, warmup_epochs=0, batch_size=4, num_workers=0,
            cache_prefix=False, progress=False,
        )  # fmt: skip
        init = {"init_prompts": inits[spec.prompt_init]} if spec.prompt_init else {}
        backbone = backbones.from_spec(specs[spec.backbone])
        try:
            model = methods.build(spec.method, backbone, classes, **spec.options, **init)
            before = {k: v.clone() for k, v in model.prompt_state_dict().items()}
            frozen = {k: v.clone() for k, v in model.state_dict().items() if k not in before}
            preprocess = Preprocess.from_data_config(specs[spec.backbone]["data_config"])
            result = fit(model, data, data, preprocess, config)
        except Exception as exc:
            raise AssertionError(f"recipe {recipe}, run {name}: {exc}") from exc
        assert result.epochs_run == 1, name
        assert torch.isfinite(torch.tensor(result.history[0]["train_loss"])), name
        after = model.prompt_state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before), f"{name}: no update"
        state = model.state_dict()
        changed = [k for k, v in frozen.items() if not torch.equal(v, state[k])]
        assert not changed, f"{recipe}, {name}: frozen tensors changed: {changed[:5]}"
