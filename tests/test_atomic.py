"""Atomic writes survive a writer killed mid-way: no half-written target, no blocked next save."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from visprompt.atomic import atomic_directory, atomic_path, write_text


def _kill_mid_write(target: Path, folder: bool) -> None:
    """A real writer process SIGKILLed while its new content is half written."""
    block = "atomic_directory" if folder else "atomic_path"
    write = "(tmp / 'a.txt').write_text('half')" if folder else "tmp.write_text('half')"
    code = textwrap.dedent(
        f"""
        import os, signal
        from visprompt.atomic import {block}
        with {block}({str(target)!r}) as tmp:
            {write}
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    )
    assert proc.returncode == -signal.SIGKILL


def _siblings(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir() if p.name != target.name)


def test_killed_file_write_keeps_old_content_and_is_cleaned_up(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    write_text(target, "old")
    _kill_mid_write(target, folder=False)
    assert target.read_text() == "old"
    assert len(_siblings(target)) == 1  # the dead writer's temporary
    write_text(target, "new")
    assert target.read_text() == "new"
    assert _siblings(target) == []


def test_killed_folder_swap_never_blocks_the_next_one(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("v1")
    _kill_mid_write(target, folder=True)
    assert (target / "a.txt").read_text() == "v1"
    # a kill between the two renames: the old folder moved aside, the new one not yet in
    os.replace(target, tmp_path / ".run.old-999999999")
    with atomic_directory(target) as tmp:
        assert (target / "a.txt").read_text() == "v1"  # restored before the new write
        (tmp / "a.txt").write_text("v2")
    assert (target / "a.txt").read_text() == "v2"
    assert _siblings(target) == []


def test_failed_write_leaves_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    write_text(target, "kept")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("writer failed")
    assert target.read_text() == "kept"
    assert _siblings(target) == []


def test_rewriting_the_same_content_leaves_the_target_untouched(tmp_path: Path) -> None:
    file, folder = tmp_path / "f.txt", tmp_path / "d"
    write_text(file, "same")
    with atomic_directory(folder) as tmp:
        (tmp / "a.txt").write_text("same")
    stamps = (file.stat().st_mtime_ns, folder.stat().st_mtime_ns, (folder / "a.txt").stat().st_ino)
    os.utime(file, ns=(1, 1))  # an old timestamp: any rewrite would move it
    write_text(file, "same")
    with atomic_directory(folder) as tmp:
        (tmp / "a.txt").write_text("same")
    assert file.stat().st_mtime_ns == 1 and (folder / "a.txt").stat().st_ino == stamps[2]
    assert _siblings(file) == ["d"] and _siblings(folder) == ["f.txt"]  # no temporaries left
    write_text(file, "new")
    with atomic_directory(folder) as tmp:
        (tmp / "a.txt").write_text("same")
        (tmp / "b.txt").write_text("extra")
    assert file.read_text() == "new" and file.stat().st_mtime_ns != 1
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "b.txt"]
