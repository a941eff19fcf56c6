"""DVC round trip: repro, push to the default remote, fresh clone, pull, identical bytes.

`dvc repro` runs the stages' `kedro run --pipelines ...` commands: this is also the e2e run
of both data pipelines on the synthetic source.
"""

from __future__ import annotations

import json

import mlflow
import pytest

pytestmark = pytest.mark.slow

OUTPUTS = (
    "data/03_primary/shards/manifest.csv",
    "data/03_primary/shards/images_train.npy",
    "data/03_primary/shards/labels_val.npy",
    "data/03_primary/shards/classes.json",
    "data/08_reporting/ingestion/report.json",
    "data/08_reporting/validation/report.json",
    "data/03_primary/shards/summary.json",
    "data/08_reporting/validation/data_docs/index.html",
)


def _ok(result) -> str:
    assert result.returncode == 0, f"{result.args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_repro_push_clone_pull_restores_identical_outputs(project_copy):
    project_copy.update_yaml(
        "conf/base/parameters_data_ingestion.yml",
        {
            "data_ingestion": {
                "source": "synthetic",
                "sources": {"synthetic": {"num_classes": 3, "num_images": 36, "seed": 4}},
            }
        },
    )
    repo, dvc = project_copy, "dvc"  # the venv's, first on PATH
    _ok(repo.command("git", "init", "-q"))
    _ok(repo.command("git", "add", "-A"))
    _ok(repo.command("git", "commit", "-qm", "project"))
    # Only the data stages (later stages of dvc.yaml need backbones and training).
    _ok(repo.command(dvc, "repro", "data"))
    _ok(repo.command("git", "add", "-A"))
    _ok(repo.command("git", "commit", "-qm", "dvc.lock and outputs' .gitignore"))
    assert (repo.path / "dvc.lock").is_file()
    summary = json.loads((repo.path / OUTPUTS[6]).read_text())
    assert summary["success"] and summary["num_images"] == 36 and summary["num_classes"] == 3
    client = mlflow.MlflowClient(f"sqlite:///{repo.path / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("visprompt").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # one stage, one kedro run
    _ok(repo.command(dvc, "push"))
    remote = repo.path.parent / "home" / ".cache" / "visprompt" / "dvc-remote"
    assert remote.is_dir() and any(remote.rglob("*"))  # the default remote, outside the tree
    clone = repo.path.parent / "clone"
    _ok(repo.command("git", "clone", "-q", str(repo.path), str(clone)))
    fresh = type(repo)(path=clone, env=repo.env)
    assert not (clone / OUTPUTS[0]).exists()
    _ok(fresh.command(dvc, "pull", "--with-deps", "data"))
    for output in OUTPUTS:
        assert (clone / output).read_bytes() == (repo.path / output).read_bytes(), output
    status = _ok(fresh.command(dvc, "status", "--with-deps", "data"))
    assert "up to date" in status.lower(), status
    metrics = _ok(fresh.command(dvc, "metrics", "show", "data/08_reporting/validation/report.json"))
    assert "success" in metrics and "num_rows" in metrics
