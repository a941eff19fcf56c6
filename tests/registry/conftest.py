"""One real MLflow sqlite store per test module (cwd = its project root).

Creating a store runs MLflow's schema migrations (seconds), so the tests of a module share
one store and keep apart by registering under their own model name (`model_name`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("registry_project")
    (root / "mlflow").mkdir()
    uri = f"sqlite:///{root}/mlflow/mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        # the project's layout (conf/base/mlflow.yml): artifacts next to the database
        mlflow.create_experiment("registry-test", str(root / "mlflow" / "artifacts"))
        mlflow.set_experiment("registry-test")
        yield root
    mlflow.set_tracking_uri(None)


@pytest.fixture
def model_name(request: pytest.FixtureRequest) -> str:
    """A registered model name of this test's own."""
    return re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")
