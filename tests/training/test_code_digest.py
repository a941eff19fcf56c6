"""The code digest: changes with the source a training run executes, and only with it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from visprompt.training.code_digest import PACKAGE_ROOT, RESULT_CODE, source_digest, source_files


@pytest.fixture
def package(tmp_path: Path) -> Path:
    copy = tmp_path / "visprompt"
    shutil.copytree(PACKAGE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_digest_depends_on_bytes_not_on_location(package: Path) -> None:
    assert source_digest(package) == source_digest(PACKAGE_ROOT)
    names = [f.relative_to(package).as_posix() for f in source_files(package)]
    assert names == sorted(names)
    assert "methods/vp/model.py" in names and "backbones.py" in names
    assert "data/transforms.py" in names and "data/ingest.py" not in names
    assert all(n.split("/")[0] in {p.split("/")[0] for p in RESULT_CODE} for n in names)


def test_editing_executed_code_changes_the_digest(package: Path) -> None:
    before = source_digest(package)
    vp = package / "methods" / "vp" / "model.py"
    vp.write_text(vp.read_text() + "\n# a comment is a change too\n")
    edited = source_digest(package)
    assert edited != before
    (package / "methods" / "new_method.py").write_text("X = 1\n")
    assert source_digest(package) not in {before, edited}


def test_code_outside_the_run_does_not_change_the_digest(package: Path) -> None:
    before = source_digest(package)
    (package / "cli.py").write_text("# edited\n")
    (package / "data" / "ingest.py").write_text("# edited\n")
    (package / "methods" / "__pycache__").mkdir(exist_ok=True)
    (package / "methods" / "__pycache__" / "vp.cpython-312.pyc").write_bytes(b"\0")
    assert source_digest(package) == before


def test_moving_code_between_files_changes_the_digest(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.py").write_text("x = 1\n")
    (tmp_path / "m" / "b.py").write_text("")
    first = source_digest(tmp_path, ["m"])
    (tmp_path / "m" / "a.py").write_text("")
    (tmp_path / "m" / "b.py").write_text("x = 1\n")
    assert source_digest(tmp_path, ["m"]) != first


def test_a_missing_part_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.py does not exist"):
        source_digest(tmp_path, ["nope.py"])
