"""data_ingestion + data_validation through the real `kedro run` in a copy of the project.

A failing validation is exercised in-process (tests/pipelines/test_data_validation.py): each
`kedro run` here costs ~20 s of CPU in imports alone (MLflow, torch, Great Expectations).
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

pytestmark = pytest.mark.slow

SMALL_SYNTHETIC = {
    "data_ingestion": {
        "source": "synthetic",
        "sources": {"synthetic": {"num_classes": 4, "num_images": 48, "seed": 3}},
    }
}


def _runs(project):
    client = mlflow.MlflowClient(f"sqlite:///{project.path / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("visprompt")
    return client, client.search_runs([experiment.experiment_id])


def test_synthetic_run_tracks_statistics_in_mlflow(project_copy):
    project_copy.update_yaml("conf/base/parameters_data_ingestion.yml", SMALL_SYNTHETIC)
    project_copy.run("--pipelines", "data_ingestion,data_validation")
    data = project_copy.path / "data"
    summary = json.loads((data / "08_reporting/validation/summary.json").read_text())
    assert summary["success"] and summary["num_images"] == 48 and summary["num_classes"] == 4
    images = np.load(data / "03_primary/shards/images_train.npy")
    assert images.shape[1:] == (32, 32, 3) and len(images) == sum(
        summary["counts"]["train"].values()
    )
    assert (data / "08_reporting/validation/data_docs/index.html").is_file()
    client, runs = _runs(project_copy)
    assert len(runs) == 1  # one MLflow run per `kedro run`
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["data_hash"] == summary["data_hash"]
    assert run.data.metrics["data.images"] == 48
    assert run.data.params["data_ingestion.source"] == "synthetic"
    artifact_root = project_copy.path / "mlflow" / "artifacts"
    assert run.info.artifact_uri.startswith(artifact_root.as_uri())
    assert list(artifact_root.rglob("report.json"))


def test_quickstart_recipe_ingests_digits(project_copy):
    # The recipe's options, restricted to the two data pipelines by the command line.
    project_copy.run(
        "--config", "pipelines/quickstart.yml", "--pipelines", "data_ingestion,data_validation"
    )
    data = project_copy.path / "data"
    summary = json.loads((data / "08_reporting/validation/summary.json").read_text())
    assert summary["success"] and summary["num_images"] == 1797 and summary["num_classes"] == 10
    report = json.loads((data / "08_reporting/ingestion/report.json").read_text())
    assert report["conversions"] == {"total": 1797, "by_mode": {"L": 1797}}
