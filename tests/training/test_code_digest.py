"""The code digest: changes with the source a training run executes, and only with it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from visprompt.training.code_digest import RUN_MODULES, SOURCE_ROOT, code_digest, code_files


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of src/ (the folder holding the package)."""
    shutil.copytree(
        SOURCE_ROOT / "visprompt",
        tmp_path / "visprompt",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def _digest(root: Path) -> str:
    return code_digest.__wrapped__(RUN_MODULES, root)  # uncached: the copy is edited


def test_digest_depends_on_bytes_not_on_location(root: Path) -> None:
    assert _digest(root) == code_digest()
    names = [f.relative_to(root).as_posix() for f in code_files(RUN_MODULES, root)]
    assert names == sorted(names)
    assert {"visprompt/methods/vp/model.py", "visprompt/backbones.py"} <= set(names)
    # derived from imports: the shard reader that feeds every batch is in, ingestion is not
    assert {"visprompt/data/transforms.py", "visprompt/data/shards.py"} <= set(names)
    assert "visprompt/data/ingest.py" not in names
    assert not any(n.startswith("visprompt/pipelines/") for n in names)  # no Kedro wiring
    assert "visprompt/__init__.py" not in names  # the version string decides no result


def test_editing_executed_code_changes_the_digest(root: Path) -> None:
    before = _digest(root)
    vp = root / "visprompt" / "methods" / "vp" / "model.py"
    vp.write_text(vp.read_text() + "\n# a comment is a change too\n")
    edited = _digest(root)
    assert edited != before
    shards = root / "visprompt" / "data" / "shards.py"
    shards.write_text(shards.read_text() + "\n# the shard reader\n")
    assert _digest(root) not in {before, edited}


def test_a_module_the_run_newly_imports_joins_the_digest(root: Path) -> None:
    before = _digest(root)
    (root / "visprompt" / "data" / "helper.py").write_text("X = 1\n")
    assert _digest(root) == before  # not imported: not executed
    shards = root / "visprompt" / "data" / "shards.py"
    shards.write_text(shards.read_text() + "\nfrom visprompt.data import helper  # noqa\n")
    files = code_files(RUN_MODULES, root)
    assert root / "visprompt" / "data" / "helper.py" in files


def test_a_package_that_imports_by_name_brings_its_modules(root: Path) -> None:
    """training/__init__ loads `fit` with importlib: every training module counts."""
    files = code_files(("visprompt.training",), root)
    assert root / "visprompt" / "training" / "loop.py" in files


def test_code_outside_the_run_does_not_change_the_digest(root: Path) -> None:
    before = _digest(root)
    (root / "visprompt" / "cli.py").write_text("# edited\n")
    (root / "visprompt" / "data" / "ingest.py").write_text("# edited\n")
    (root / "visprompt" / "methods" / "__pycache__").mkdir(exist_ok=True)
    (root / "visprompt" / "methods" / "__pycache__" / "vp.cpython-312.pyc").write_bytes(b"\0")
    assert _digest(root) == before


def test_moving_code_between_files_changes_the_digest(tmp_path: Path) -> None:
    package = tmp_path / "visprompt"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "m.py").write_text("from visprompt import a, b  # noqa\n")
    (package / "a.py").write_text("x = 1\n")
    (package / "b.py").write_text("")
    first = code_digest.__wrapped__(("visprompt.m",), tmp_path)
    (package / "a.py").write_text("")
    (package / "b.py").write_text("x = 1\n")
    assert code_digest.__wrapped__(("visprompt.m",), tmp_path) != first
