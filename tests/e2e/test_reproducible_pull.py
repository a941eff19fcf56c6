"""A teammate reproduces a result: run the pipeline through DVC, push to the default local
remote, clone afresh, `dvc pull`; nothing is stale, `dvc repro` runs nothing, and the
evaluation metrics read from the pulled outputs equal the original ones."""

from __future__ import annotations

import json

import pytest
import yaml
from e2e.test_train_eval import TINY_BACKBONE, TINY_TRAINING

pytestmark = pytest.mark.slow

STAGE = "comparison"  # the last stage of the default chain in dvc.yaml; its deps pull the rest
RUN = "lp"


def _ok(result) -> str:
    assert result.returncode == 0, f"{result.args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _tiny(project) -> None:
    conf = project.path / "conf/base"
    runs = {RUN: TINY_TRAINING["training"]["runs"][RUN]}
    training = TINY_TRAINING | {"training": TINY_TRAINING["training"] | {"runs": runs}}
    (conf / "parameters_training.yml").write_text(yaml.safe_dump(training))
    backbone = yaml.safe_load((conf / "parameters_backbone.yml").read_text())["backbone"]
    (conf / "parameters_backbone.yml").write_text(
        yaml.safe_dump({"backbone": backbone | TINY_BACKBONE["backbone"]})
    )
    project.update_yaml(
        "conf/base/parameters_data_ingestion.yml",
        {
            "data_ingestion": {
                "source": "synthetic",
                "sources": {"synthetic": {"num_classes": 4, "num_images": 80, "seed": 2}},
            }
        },
    )


def test_clone_pull_is_up_to_date_and_has_the_same_metrics(project_copy) -> None:
    stages = yaml.safe_load((project_copy.path / "dvc.yaml").read_text())["stages"]
    if STAGE not in stages:
        pytest.skip(f"dvc.yaml has no '{STAGE}' stage yet (stages: {sorted(stages)})")
    repo = project_copy
    _tiny(repo)
    _ok(repo.command("git", "init", "-q"))
    _ok(repo.command("git", "add", "-A"))
    _ok(repo.command("git", "commit", "-qm", "project"))
    _ok(repo.command("dvc", "repro", STAGE, timeout=900))
    _ok(repo.command("git", "add", "-A"))
    _ok(repo.command("git", "commit", "-qm", "dvc.lock"))
    _ok(repo.command("dvc", "push"))
    metrics_file = f"data/07_model_output/{RUN}/test_metrics.json"
    original = json.loads((repo.path / metrics_file).read_text())
    table = (repo.path / "data/08_reporting/comparison.csv").read_text()

    clone = repo.path.parent / "clone"
    _ok(repo.command("git", "clone", "-q", str(repo.path), str(clone)))
    fresh = type(repo)(path=clone, env=repo.env)
    assert not (clone / metrics_file).exists()
    # the chain up to STAGE (profiling, after it, is left out to keep the test small)
    _ok(fresh.command("dvc", "pull", "--with-deps", STAGE))
    status = _ok(fresh.command("dvc", "status", "--with-deps", STAGE))
    assert "up to date" in status.lower(), status
    repro = _ok(fresh.command("dvc", "repro", STAGE))  # re-checks every stage up to STAGE
    assert "Running stage" not in repro, repro
    assert json.loads((clone / metrics_file).read_text()) == original
    assert (clone / "data/08_reporting/comparison.csv").read_text() == table
    assert 0.0 <= original["top1"] <= 1.0
