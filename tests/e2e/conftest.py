"""A temporary copy of the project for end-to-end runs through the real `kedro` CLI.

`project_copy` copies conf/base, src, pyproject.toml, dvc.yaml, pipelines/, .gitignore and
the DVC config (not data/, mlflow/, conf/local or caches) into a tmp dir and returns a
`ProjectCopy` whose `run()` starts `kedro run ...` there as a subprocess with the venv's
kedro, and whose `update_yaml()` edits a config file (e.g. smaller parameters).
HOME points into the tmp dir, so DVC's default remote (~/.cache/...) lands there too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
COPIED = (
    "conf/base",
    "conf/logging.yml",
    ".telemetry",
    "src",
    "pyproject.toml",
    "dvc.yaml",
    "pipelines",
    ".gitignore",
    ".dvc",
    ".dvcignore",
    "data/01_raw/weights/vit_fmnist.safetensors",  # shipped weights: a dvc.yaml dependency
    "data/01_raw/weights/vit_fmnist.provenance.json",
)
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "cache", "tmp", "config.local")


def _merge(base: dict, updates: Mapping) -> dict:
    for key, value in updates.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


@dataclass
class ProjectCopy:
    path: Path
    env: dict[str, str]

    def update_yaml(self, relative: str, updates: Mapping[str, Any]) -> None:
        """Merge `updates` (nested) into the YAML file at `relative`."""
        file = self.path / relative
        data = yaml.safe_load(file.read_text()) or {}
        file.write_text(yaml.safe_dump(_merge(data, updates), sort_keys=False))

    def command(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Any command in the project (venv's bin first on PATH), output captured."""
        return subprocess.run(
            list(args),
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run(self, *args: str, check: bool = True, timeout: float = 600):
        """`kedro run <args>`; with `check`, a failure shows kedro's output."""
        result = self.command(str(VENV_BIN / "kedro"), "run", *args, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"kedro run {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result


@pytest.fixture
def project_copy(tmp_path: Path) -> ProjectCopy:
    return make_project_copy(tmp_path)


def make_project_copy(tmp_path: Path) -> ProjectCopy:
    """A fresh project copy under `tmp_path` (HOME and caches inside it too)."""
    project = tmp_path / "project"
    project.mkdir()
    for entry in COPIED:
        source = ROOT / entry
        if source.is_dir():
            shutil.copytree(source, project / entry, ignore=IGNORED)
        elif source.is_file():
            (project / entry).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, project / entry, follow_symlinks=False)
    for folder in ("conf/local", "data", "mlflow"):
        (project / folder).mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "KEDRO_DISABLE_TELEMETRY": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    return ProjectCopy(path=project, env=env)
