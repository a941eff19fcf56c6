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


def test_the_prefix_cache_build_shows_progress_named_after_the_job(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The prefix-cache pass (minutes at 128 px) is a bar of its own: `[1/2] lp.seed_0
    prefix cache (train)`, then `(val)`, before the epochs' bars."""
    from training.train_helpers import ColourImages, preprocess_for, probe_model, run_config

    from visprompt.training import fit

    monkeypatch.setattr(progress_module, "PLAIN_INTERVAL_S", 0.0)
    job = progress_module.start_job(2)
    try:
        job.begin("lp.seed_0")
        model = probe_model()
        config = run_config(epochs=1, cache_prefix=True, progress=True, batch_size=8)
        fit(model, ColourImages(32, 0), ColourImages(16, 1), preprocess_for(model), config)
    finally:
        progress_module.end_job()
    lines = capsys.readouterr().err.splitlines()
    named = [line.split(":")[0] for line in lines if line.startswith("[1/2] lp.seed_0 ")]
    assert "[1/2] lp.seed_0 prefix cache (train)" in named, lines
    assert "[1/2] lp.seed_0 prefix cache (val)" in named
    assert named.index("[1/2] lp.seed_0 prefix cache (val)") < named.index(
        "[1/2] lp.seed_0 epoch 1/1"
    )
    assert all("job ETA" in line for line in lines if line.startswith("[1/2]"))
