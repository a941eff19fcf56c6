"""The suite recipes cannot rot: every task of the GPU/internet recipe names a torchvision
class and splits it has, every task's workspace parameters pass the project's own checks
(as its `kedro run` would), and tasks load under the protocol from tiny stand-ins in
torchvision's on-disk format. (Each recipe's runs train one step on stand-in backbones in
tests/pipelines/test_recipes.py.)"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision import datasets

from visprompt.data.sources import load_source
from visprompt.pipelines import experiment
from visprompt.pipelines.runs import command_parameters
from visprompt.suite import config
from visprompt.training.runs import validate_runs

ROOT = Path(__file__).resolve().parents[2]
GPU_TASKS = {"cifar100", "caltech101", "dtd", "flowers102", "pets", "svhn", "eurosat"}
CLASSES = [f"texture_{i}" for i in range(4)]


@pytest.mark.parametrize("recipe", ["suite", "vtab_gpu"])
def test_every_task_is_a_valid_experiment_of_the_project(recipe: str) -> None:
    suite = config.load_recipe(ROOT / "pipelines" / f"{recipe}.yml")
    assert len(suite.raw["seeds"]) >= 3 and suite.raw["protocol"]["train"] == 800
    for name, task in suite.tasks.items():
        params = command_parameters(
            env=suite.env, runtime_params=suite.task_parameters(name), project_path=ROOT
        )
        for (section, key), value in task.replaced(suite.raw["tuning"]).items():
            params[section][key] = value
        runs = validate_runs(params)
        experiment.check(params, runs)
        assert experiment.name(params) == name and list(runs) == list(task.runs)
        assert params["data_ingestion"]["sources"]["vtab1k"]["source"] == task.source
        assert params["training"]["hparams"] == "tuned"


def test_the_gpu_recipe_names_torchvision_classes_and_their_splits() -> None:
    suite = config.load_recipe(ROOT / "pipelines/vtab_gpu.yml")
    assert set(suite.tasks) == GPU_TASKS and suite.env == "gpu"
    for task in suite.tasks.values():
        cls = getattr(datasets, task.options["name"])
        parameters = inspect.signature(cls.__init__).parameters
        if task.options.get("splits"):  # ours -> theirs, for a class with a split argument
            assert "split" in parameters and set(task.options["splits"]) == {"train", "test"}
        else:  # a train flag, or one pool the protocol splits
            assert "split" not in parameters, task.name


def _image(folder: Path, name: str, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / name)


def _eurosat(root: Path) -> None:
    for c, cls in enumerate(CLASSES):
        for i in range(10):
            _image(root / "eurosat/2750" / cls, f"{cls}_{i}.png", 100 * c + i)


def _dtd(root: Path) -> None:
    data = root / "dtd/dtd"
    lines: dict[str, list[str]] = {"train": [], "test": []}
    for c, cls in enumerate(CLASSES):
        for i in range(12):
            _image(data / "images" / cls, f"{i}.jpg", 100 * c + i)
            lines["train" if i < 8 else "test"].append(f"{cls}/{i}.jpg")
    (data / "labels").mkdir(parents=True)
    for split, entries in lines.items():
        (data / "labels" / f"{split}1.txt").write_text("\n".join(entries) + "\n")


@pytest.mark.parametrize(("task", "make", "expected"), [
    ("eurosat", _eurosat, {"train": 12, "val": 8, "test": 20}),  # one pool: test = the rest
    ("dtd", _dtd, {"train": 12, "val": 8, "test": 16}),  # DTD's own test split
])  # fmt: skip
def test_a_gpu_task_loads_under_the_protocol_from_a_stand_in(
    task: str, make, expected: dict[str, int], tmp_path: Path
) -> None:
    suite = config.load_recipe(ROOT / "pipelines/vtab_gpu.yml")
    make(tmp_path)
    source = suite.task_parameters(task)["data_ingestion"]["sources"]["vtab1k"]
    options = source["options"] | {"root": str(tmp_path), "download": False}  # no network
    data = load_source("vtab1k", source | {"options": options, "train": 12, "val": 8})
    counts = {s: sum(r.split == s for r in data.records) for s in expected}
    assert counts == expected and data.classes == CLASSES
    assert data.records[0].pixels().size == (24, 24)
