"""The prompt_init pipeline on a tiny real shard set, backbone file and MLflow sqlite store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from visprompt import backbones, methods
from visprompt.pipelines.prompt_init import create_pipeline
from visprompt.pipelines.prompt_init.nodes import build_prompt_inits, init_configs
from visprompt.prompt_init import load_metadata, load_prompts

CONF = Path(__file__).parents[2] / "conf" / "base"


def _vpt(variant: str, num_prompts: int, init: str, backbone: str = "vit") -> dict:
    options = {"variant": variant, "num_prompts": num_prompts, "init": "spt"}
    return {"method": "vpt", "backbone": backbone, "options": options, "prompt_init": init}


@pytest.fixture
def setup(tmp_path: Path, shard_dir: Path, vit_spec: dict, mlflow_store: str) -> dict:
    """The session's tiny shards (48 train images, 16 patches) and ViT (D=32, 2 blocks)."""
    params = {
        "split": "train",
        "output_dir": str(tmp_path / "out"),
        "device": "run",
        "batch_size": 16,
        "max_images": None,
        "memory_budget_mb": 1,
        "seed": 42,
        "kmeans": {"max_iter": 50, "tol": 1e-4},
        "inits": {
            "spt_kmeans": {"strategy": "kmeans"},
            "spt_random": {"strategy": "random"},
            "spt_shallow": {"strategy": "max_pool"},
            "spt_unused": {"strategy": "mean_pool"},
        },
    }
    return {
        "runs": {  # the runs size their inits; two runs may share one of the same size
            "deep_a": _vpt("deep", 4, "spt_kmeans"),
            "deep_b": _vpt("deep", 4, "spt_kmeans"),
            "deep_c": _vpt("deep", 4, "spt_random"),
            "shallow": _vpt("shallow", 6, "spt_shallow"),
            "plain": {"method": "linear_probe", "backbone": "vit"},
        },
        "shards": str(shard_dir),
        "specs": {"vit": vit_spec},
        "params": params,
        "tmp": tmp_path,
        "summary": {"success": True, "data_hash": "abc123"},
    }


def test_pipeline_writes_prompts_metadata_and_logs_to_mlflow(setup: dict) -> None:
    catalog = DataCatalog(
        {
            "shards": MemoryDataset(setup["shards"]),
            "validation_summary": MemoryDataset(setup["summary"]),
            "backbone_specs": MemoryDataset(setup["specs"]),
            "params:prompt_init": MemoryDataset(setup["params"]),
            "params:training.runs": MemoryDataset(setup["runs"]),
            "params:training_engine": MemoryDataset({"accelerator": "cpu", "precision": "32-true"}),
            "prompt_inits": MemoryDataset(),
        }
    )
    with mlflow.start_run() as parent:
        SequentialRunner().run(create_pipeline(), catalog)
    index = catalog.load("prompt_inits")
    assert set(index) == {"spt_kmeans", "spt_random", "spt_shallow"}  # spt_unused: no run
    for name, shape in (("spt_kmeans", (2, 4, 32)), ("spt_shallow", (1, 6, 32))):
        entry = index[name]
        assert Path(entry["path"]).parent == setup["tmp"] / "out"
        assert tuple(load_prompts(entry["path"]).shape) == shape
        meta = load_metadata(entry["path"])
        assert meta == entry["metadata"]
        assert meta["data_hash"] == "abc123"
        assert meta["backbone_sha256"] == setup["specs"]["vit"]["sha256"]
        assert meta["images_used"] == 48
    # VPT on the same backbone takes the file as it is.
    model = methods.build(
        "vpt",
        backbones.from_spec(setup["specs"]["vit"]),
        2,
        variant="deep",
        num_prompts=4,
        init="spt",
        init_prompts=load_prompts(index["spt_kmeans"]["path"]),
    )
    assert torch.equal(model.prompts.detach(), load_prompts(index["spt_kmeans"]["path"]))
    client = mlflow.MlflowClient()
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    by_name = {r.info.run_name: r for r in children}
    assert set(by_name) == {
        "prompt_init_spt_kmeans",
        "prompt_init_spt_random",
        "prompt_init_spt_shallow",
    }
    run = by_name["prompt_init_spt_kmeans"]
    assert run.data.params["strategy"] == "kmeans"
    history = client.get_metric_history(run.info.run_id, "seconds_per_layer")
    assert sorted(m.step for m in history) == [0, 1]
    files = {f.path for f in client.list_artifacts(run.info.run_id, "prompt_init")}
    assert files == {"prompt_init/spt_kmeans.safetensors", "prompt_init/spt_kmeans.json"}


def test_refuses_failed_validation_unknown_backbone_and_bad_fields(setup: dict) -> None:
    args = (setup["shards"], setup["summary"], setup["specs"])
    runs = setup["runs"]
    with pytest.raises(ValueError, match="failed validation"):
        build_prompt_inits(
            setup["shards"], {"success": False}, setup["specs"], setup["params"], runs
        )
    nope = runs | {"deep_a": _vpt("deep", 4, "spt_kmeans", backbone="nope")}
    nope |= {"deep_b": _vpt("deep", 4, "spt_kmeans", backbone="nope")}
    with pytest.raises(ValueError, match="backbone 'nope' is not in backbone_specs"):
        build_prompt_inits(*args, setup["params"], nope)
    params = setup["params"] | {"inits": {"x": {"strategy": "median"}}}
    with pytest.raises(ValueError, match=r"prompt_init.inits.x: .*unknown strategy 'median'"):
        build_prompt_inits(*args, params, {"r": _vpt("deep", 2, "x")})
    params = setup["params"] | {"inits": {"x": {"strategy": "random", "prompts": 2}}}
    with pytest.raises(ValueError, match=r"inits.x: unknown key\(s\) \['prompts'\]"):
        build_prompt_inits(*args, params, {"r": _vpt("deep", 2, "x")})
    assert not (setup["tmp"] / "out").exists()  # nothing half-written


def test_init_sizes_are_stated_once_by_the_runs(setup: dict) -> None:
    params, runs = setup["params"], setup["runs"]
    configs = init_configs(params, runs)
    assert {n: (b, c.variant, c.num_prompts) for n, (b, c) in configs.items()} == {
        "spt_kmeans": ("vit", "deep", 4),
        "spt_random": ("vit", "deep", 4),
        "spt_shallow": ("vit", "shallow", 6),
    }
    clash = runs | {"deep_b": _vpt("deep", 20, "spt_kmeans")}
    with pytest.raises(ValueError, match=r"runs .*deep_a.*deep_b.* share prompt_init 'spt_kmeans'"):
        init_configs(params, clash)
    stated = params | {"inits": {"spt_kmeans": {"strategy": "kmeans", "num_prompts": 4}}}
    with pytest.raises(ValueError, match=r"inits.spt_kmeans: remove \['num_prompts'\]"):
        init_configs(stated, {"r": _vpt("deep", 4, "spt_kmeans")})
    with pytest.raises(ValueError, match=r"inits lacks \{'spt_new': \['r'\]\}"):
        init_configs(params, {"r": _vpt("deep", 4, "spt_new")})
    # a run that leaves num_prompts/variant out gets VPT's defaults, as the run itself does
    default = {"r": {"method": "vpt", "backbone": "vit", "prompt_init": "spt_random"}}
    vpt_defaults = methods.config_class("vpt")()
    _, config = init_configs(params, default)["spt_random"]
    assert config.num_prompts == vpt_defaults.num_prompts
    assert config.variant == vpt_defaults.variant


def test_project_inits_are_sized_by_the_project_runs() -> None:
    params = yaml.safe_load((CONF / "parameters_prompt_init.yml").read_text())["prompt_init"]
    training = yaml.safe_load((CONF / "parameters_training.yml").read_text())["training"]
    configs = init_configs(params, training["runs"])
    assert {c.strategy for _, c in configs.values()} == {
        "kmeans",
        "random",
        "mean_pool",
        "max_pool",
    }
    users = {n: r for n, r in training["runs"].items() if r.get("prompt_init")}
    for name, run in users.items():
        backbone, config = configs[run["prompt_init"]]
        assert run["method"] == "vpt" and run["options"]["init"] == "spt", name
        assert (run["backbone"], run["options"]["num_prompts"]) == (backbone, config.num_prompts)
        assert run.get("train") == training["runs"]["vpt_deep"].get("train"), name
