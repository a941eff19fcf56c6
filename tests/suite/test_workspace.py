"""A task's workspace links the project's configuration read-only: writing the task's own
run lists never writes through a link into the project (a workspace made by an older
layout, where every conf/base file was a link, included)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from visprompt.suite import config, workspace

ROOT = Path(__file__).resolve().parents[2]


def test_the_task_files_are_the_workspaces_own_and_the_project_is_untouched(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    shutil.copy(ROOT / "pyproject.toml", project)
    before = {p: p.read_bytes() for p in (project / "conf").rglob("*.yml")}
    suite = config.load_recipe(ROOT / "pipelines/suite.yml")
    suite = config.parse(
        suite.raw | {"workspace": str(tmp_path / "ws")}, shared=suite.shared, env=suite.env
    )
    where = workspace.folder(suite, "fashion_mnist", project)
    for file in workspace.REPLACED_FILES.values():  # the older layout: links everywhere
        (where / file).parent.mkdir(parents=True, exist_ok=True)
        (where / file).symlink_to(project / file)
    workspace.prepare(suite, "fashion_mnist", project)
    assert {p: p.read_bytes() for p in (project / "conf").rglob("*.yml")} == before
    training = yaml.safe_load((where / workspace.REPLACED_FILES["training"]).read_text())
    assert not (where / workspace.REPLACED_FILES["training"]).is_symlink()
    assert list(training["training"]["runs"]) == list(suite.tasks["fashion_mnist"].runs)
    assert all(r["backbone"] == "cnn" for r in training["training"]["runs"].values())
    assert (where / "conf/base/catalog.yml").resolve() == project / "conf/base/catalog.yml"
    task = yaml.safe_load((where / workspace.RUN_CONFIG).read_text())["run"]["params"]
    assert task["experiment"]["name"] == "fashion_mnist"
    assert task["data_ingestion"]["source"] == "vtab1k"
