"""The CI lock check: produced folders may differ in a clean clone, code and params may not."""

from __future__ import annotations

import importlib.util
from pathlib import Path, PurePosixPath

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "check_dvc_lock.py"
spec = importlib.util.spec_from_file_location("check_dvc_lock", SCRIPT)
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)

LOCK = {
    "stages": {
        "train@vp": {"outs": [{"path": "data/07_model_output/vp/train"}]},
        "comparison": {"outs": [{"path": "data/08_reporting/comparison.csv"}]},
    }
}


def test_produced_paths_include_outputs_and_their_folders() -> None:
    produced = check.produced_paths(LOCK)
    assert PurePosixPath("data/07_model_output/vp/train") in produced
    assert PurePosixPath("data/07_model_output") in produced
    assert PurePosixPath("src/visprompt") not in produced


def test_a_produced_folder_reading_modified_is_allowed_but_code_is_not() -> None:
    status = {
        "comparison": [
            {"changed deps": {"data/07_model_output": "modified", "src/visprompt": "modified"}}
        ],
        "train@vp": [{"changed deps": {"data/03_primary": "deleted"}}, "changed command"],
    }
    problems = check.stale_entries(status, check.produced_paths(LOCK))
    assert problems == [
        "comparison: dependency src/visprompt modified",
        "train@vp: changed command",
    ]


def test_changed_params_are_reported() -> None:
    status = {"train@vp": [{"changed params": {"params.yaml": {"lr": "modified"}}}]}
    assert check.stale_entries(status, set()) == [
        "train@vp: changed params {'params.yaml': {'lr': 'modified'}}"
    ]
