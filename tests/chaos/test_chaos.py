"""The short chaos run of `make test`: `kedro run` killed (SIGKILL) in tuning and in
training, then rerun; the final state equals an uninterrupted run's (`make chaos` runs 20
points over every phase)."""

from __future__ import annotations

from pathlib import Path

import pytest
from chaos import run_chaos

pytestmark = pytest.mark.slow


def test_kills_in_tuning_and_training_end_in_the_reference_state(tmp_path: Path) -> None:
    rows = run_chaos(tmp_path, count=2, seed=0, chain=2, phases=["tuning", "training"])
    assert [r["final state"] for r in rows] == ["same", "same"], rows
    assert not any(r["killed in"].startswith("run ended first") for r in rows), rows
