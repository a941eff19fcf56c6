"""`kedro viz build` makes the static pipeline site offline (no network, no running server)."""

from __future__ import annotations

import json

import pytest
from conftest import VENV_BIN

pytestmark = pytest.mark.slow


def test_kedro_viz_build_writes_the_site_with_every_run(project_copy) -> None:
    result = project_copy.command(str(VENV_BIN / "kedro"), "viz", "build", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    build = project_copy.path / "build"
    assert (build / "index.html").is_file()
    graph = json.loads((build / "api/main").read_text())
    names = {n["name"] for n in graph["nodes"]}
    assert {"train", "evaluate", "compare_runs", "dvc_files"} <= names
    pipelines = {p["id"] for p in graph["pipelines"]}
    assert {"__default__", "training", "evaluation"} <= pipelines
