"""Progress bars print plain periodic lines, not carriage-return redraws, off a terminal."""

from __future__ import annotations

import io
import time

import pytest

from visprompt import progress as progress_module
from visprompt.progress import progress_bar


@pytest.fixture
def short_interval(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(progress_module, "PLAIN_INTERVAL_S", 0.05)
    return 0.05


def test_short_work_prints_nothing_into_a_file(short_interval: float) -> None:
    out = io.StringIO()
    assert sum(progress_bar(range(100), desc="fast", file=out)) == 4950
    assert out.getvalue() == ""


def test_long_work_prints_whole_lines_at_most_once_per_interval(short_interval: float) -> None:
    out = io.StringIO()
    steps = 12
    for _ in progress_bar(range(steps), desc="slow", file=out):
        time.sleep(short_interval / 2)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and out.getvalue().endswith("\n")
    assert 1 <= len(lines) <= steps // 2 + 1  # every other step at most
    assert all(line.startswith("slow:") and len(line) <= 100 for line in lines)
    assert lines[-1].split("|")[-1].strip().startswith(f"{steps}/{steps}")  # the final state
