"""data_ingestion + data_validation through the real `kedro run` in a copy of the project.

Digits here (through the quickstart recipe); synthetic through `dvc repro`, which runs the
same `kedro run` commands (test_dvc_roundtrip.py). A failing validation is exercised
in-process (tests/pipelines/test_data_validation.py): each `kedro run` costs ~20 s of CPU in
imports alone (MLflow, torch, Great Expectations), so the e2e runs are kept to three.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
from e2e_kit import console_problems

pytestmark = pytest.mark.slow


def test_quickstart_recipe_on_digits_is_one_tracked_mlflow_run(project_copy):
    # The parameters file says synthetic: the recipe's params must win (digits), and the
    # command line's --pipelines must win over the recipe (only the two data pipelines).
    project_copy.update_yaml(
        "conf/base/parameters_data_ingestion.yml", {"data_ingestion": {"source": "synthetic"}}
    )
    recipe = ("--config", "pipelines/quickstart.yml")
    result = project_copy.run(*recipe, "--pipelines", "data_ingestion,data_validation")
    assert console_problems(result.stdout, result.stderr) == []  # no warning at all
    data = project_copy.path / "data"
    summary = json.loads((data / "03_primary/shards/summary.json").read_text())
    assert summary["success"] and summary["num_images"] == 1797 and summary["num_classes"] == 10
    report = json.loads((data / "08_reporting/ingestion/report.json").read_text())
    assert report["conversions"] == {"total": 1797, "by_mode": {"L": 1797}, "exif_orientation": 0}
    images = np.load(data / "03_primary/shards/images_train.npy", mmap_mode="r")
    assert images.shape == (sum(summary["counts"]["train"].values()), 32, 32, 3)
    assert (data / "08_reporting/validation/data_docs/index.html").is_file()

    client = mlflow.MlflowClient(f"sqlite:///{project_copy.path / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("visprompt")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # one MLflow run per `kedro run`
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["data_hash"] == summary["data_hash"]
    assert run.data.params["data_ingestion.source"] == "digits"
    assert run.data.metrics["data.images"] == 1797 and run.data.metrics["data.converted.L"] == 1797
    assert run.data.metrics["data.images.test.0"] == summary["counts"]["test"]["0"]
    assert run.data.metrics["data.validation.success"] == 1.0
    artifact_root = project_copy.path / "mlflow" / "artifacts"
    assert run.info.artifact_uri.startswith(artifact_root.as_uri())
    stored = artifact_root / run.info.run_id / "artifacts" / "data"
    assert json.loads((stored / "validation" / "report.json").read_text())["success"]
    assert (stored / "validation" / "data_docs" / "index.html").is_file()
