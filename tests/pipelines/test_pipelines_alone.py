"""Every registered pipeline runs alone on finished outputs (`kedro run --pipelines NAME`).

A tiny project (synthetic 4-class data, the 2-block ViT of pipeline_kit pretrained for one
epoch, one linear probe and one SPT-initialised VPT run of one epoch, one-trial tuning,
one-run sweeps) first runs `__default__` through the project's own `kedro run` (preflight,
hooks, kedro-mlflow, a real MLflow store in the project), then each pipeline of the registry
alone, in-process: a pipeline that needs an output nobody staged (as data_validation did after
a committed ingestion) fails here.
"""

from __future__ import annotations

import shutil
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from pipeline_kit import ENGINE, ROOT, TINY_PRETRAIN, TINY_VIT

pytestmark = pytest.mark.slow

RUNS = {
    "lp": {"method": "linear_probe", "backbone": "vit"},
    "vpt_spt": {
        "method": "vpt",
        "backbone": "vit",
        "options": {"variant": "deep", "num_prompts": 2, "init": "spt"},
        "prompt_init": "spt_mean_pool",
    },
}
#: conf/base file -> {section: values merged into it}: the tiny project.
TINY: dict[str, dict[str, Any]] = {
    "parameters_training.yml": {
        "training": {
            "seeds": [0],
            "defaults": {"epochs": 1, "batch_size": 16, "progress": False},
            "runs": RUNS,
        },
        "training_engine": ENGINE,
    },
    "parameters_backbone.yml": {
        "backbone": {
            "build": {"vit": "tiny"},
            "models": {"tiny": TINY_VIT | {"weights": ["pretrain"]}},
            "pretrain": TINY_PRETRAIN,
        }
    },
    "parameters_data_ingestion.yml": {
        "data_ingestion": {
            "source": "synthetic",
            "image_size": 32,
            "sources": {"synthetic": {"num_classes": 4, "num_images": 96, "image_size": 32}},
        }
    },
    "parameters_tuning.yml": {
        "tuning": {"trials": 1, "epochs": 1, "runs": {"lp": None}, "run_spaces": None}
    },
    "parameters_profiling.yml": {
        "profiling": {"warmup": 0, "repeats": 1, "latency_repeats": 2, "data_wait_batches": 1}
    },
    "parameters_registry.yml": {"registry": {"smoke": {"max_images": 16}}},
    "parameters_adavipro_report.yml": {
        "adavipro_report": {
            "figure_run": "sweep_ada",
            "figure_images": 2,
            "runs": {
                "sweep_ada": {
                    "method": "adavipro",
                    "backbone": "vit",
                    "options": {"prompt_size": 4, "region_size": 4},
                }
            },
        }
    },
    "parameters_ap_layer_sweep.yml": {
        "ap_layer_sweep": {
            "seeds": [0],
            "runs": {
                "sweep_ap": {"method": "ap", "backbone": "vit", "options": {"layer": "blocks.0"}}
            },
        }
    },
}


REPLACED = ("runs", "pretrain")


def _merge(base: dict, updates: dict) -> dict:
    """`updates` merged into `base`; run lists and the pretraining recipe are replaced."""
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key not in REPLACED:
            _merge(base[key], value)
        else:
            base[key] = value
    return base


@pytest.fixture
def tiny_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The project's configuration made tiny, in tmp_path (data/ and mlflow/ there too), as
    the working directory of in-process `kedro run`s; MLflow's globals restored after."""
    from mlflow.tracking import fluent

    from visprompt.pipelines import runs

    project = tmp_path / "project"
    shutil.copytree(ROOT / "conf/base", project / "conf/base")
    shutil.copy2(ROOT / "conf/logging.yml", project / "conf/logging.yml")
    shutil.copy2(ROOT / "pyproject.toml", project / "pyproject.toml")
    (project / "src").mkdir()  # Kedro requires it; visprompt is imported from the venv
    (project / "conf/local").mkdir()
    for name, updates in TINY.items():
        path = project / "conf/base" / name
        path.write_text(yaml.safe_dump(_merge(yaml.safe_load(path.read_text()), updates)))
    monkeypatch.chdir(project)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("_VALIDATED", "_SESSION_PARAMETERS", "_CREATED_FROM"):
        monkeypatch.setattr(runs, name, {} if name == "_VALIDATED" else None)
    uri, experiment = mlflow.get_tracking_uri(), fluent._active_experiment_id
    yield project
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(uri)
    fluent._active_experiment_id = experiment


def _kedro_run(project: Path, *args: str) -> str:
    """The project's `kedro run` in this process; its output, or the test fails with it."""
    from click.testing import CliRunner
    from kedro.framework.startup import bootstrap_project

    from visprompt.pipelines import kedro_run

    bootstrap_project(project)
    result = CliRunner().invoke(kedro_run.run, list(args))
    if result.exit_code != 0:
        error = "".join(traceback.format_exception(result.exception))
        pytest.fail(
            f"kedro run {' '.join(args)} exited {result.exit_code}:\n{result.output}{error}"
        )
    return result.output


def _refused(project: Path, *args: str, match: str) -> None:
    from click.testing import CliRunner
    from kedro.framework.startup import bootstrap_project

    from visprompt.pipelines import kedro_run

    bootstrap_project(project)
    result = CliRunner().invoke(kedro_run.run, list(args))
    assert result.exit_code == 1 and match in result.output, result.output
    assert "Traceback" not in result.output


def test_each_registered_pipeline_runs_alone_after_a_full_run(tiny_project: Path) -> None:
    from kedro.framework.project import pipelines

    _kedro_run(tiny_project)  # __default__: every output exists
    shards = tiny_project / "data/03_primary/shards"
    summary = (shards / "summary.json").read_bytes()
    names = sorted(name for name in pipelines if name != "__default__")
    assert {"data_ingestion", "data_validation", "training", "evaluation"} <= set(names)
    for name in names:
        if name == "suite":  # runs a suite recipe's declaration: without one, one line says so
            _refused(tiny_project, "--pipelines", name, match="pipelines/suite.yml")
            continue
        _kedro_run(tiny_project, "--pipelines", name)
    # data_ingestion staged the same data again and data_validation swapped it in
    assert (shards / "summary.json").read_bytes() == summary
    assert not (tiny_project / "data/03_primary/.shards.staging").exists()
    _kedro_run(tiny_project, "--pipelines", "data_validation")  # nothing staged: in place
    assert (shards / "summary.json").read_bytes() == summary
