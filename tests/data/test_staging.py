"""A dataset version becomes current only after it validated; a killed ingestion changes
nothing current and resumes; training refuses a summary of other data."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from image_kit import image_bytes, write

from visprompt.data import staging
from visprompt.data.ingest import ingest
from visprompt.data.manifest import dataset_summary
from visprompt.data.shards import (
    CONTENT,
    SUMMARY,
    read_classes,
    recorded_content,
    require_validated,
)
from visprompt.data.sources import load_source

FRACTIONS = {"train": 0.5, "val": 0.25, "test": 0.25}
SYNTHETIC = {"num_classes": 3, "num_images": 30, "image_size": 16, "seed": 1}


def _hashes(directory: Path) -> dict[str, str]:
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _stage(final: Path, source, **kwargs) -> dict:
    """Ingest into the staging folder of `final`; the summary validation would write."""
    manifest, _ = ingest(source, 8, FRACTIONS, 0, staging.staging_dir(final), **kwargs)
    content = {CONTENT: recorded_content(staging.staging_dir(final))}
    return {"success": True, **dataset_summary(manifest, source.classes), **content}


@pytest.fixture
def current(tmp_path) -> Path:
    """A committed, validated version of 30 synthetic images."""
    final = tmp_path / "data" / "shards"
    staging.commit(final, _stage(final, load_source("synthetic", SYNTHETIC)))
    return final


def _folder(root: Path, n: int) -> Path:
    for i in range(n):
        write(root / ("cats" if i % 2 else "dogs") / f"{i}.png", image_bytes(seed=i))
    return root


def _cats_and_dogs(root: Path):
    return load_source("imagefolder", {"root": str(_folder(root, 12))})


def test_commit_swaps_in_manifest_shards_and_summary_together(current, tmp_path):
    assert (current / SUMMARY).is_file() and (current / "manifest.csv").is_file()
    assert not staging.staging_dir(current).exists() and not (current / ".work").exists()
    summary = _stage(current, _cats_and_dogs(tmp_path / "i"))
    staging.commit(current, summary)
    assert staging.read_summary(current) == summary
    assert read_classes(current) == ["cats", "dogs"]
    require_validated(current, staging.read_summary(current))
    left = sorted(p.name for p in current.parent.iterdir() if not p.name.endswith(".lock"))
    assert left == ["shards"]  # nothing left over


def test_a_failed_or_foreign_summary_is_never_committed(current, tmp_path):
    before = _hashes(current)
    summary = _stage(current, _cats_and_dogs(tmp_path / "i"))
    with pytest.raises(ValueError, match="data validation failed or never ran"):
        staging.commit(current, {**summary, "success": False})
    with pytest.raises(ValueError, match=r"does not match the data_hash .*/dataset\.json: the"):
        staging.commit(current, {**summary, "data_hash": "0" * 64})
    assert _hashes(current) == before


def test_training_refuses_a_summary_of_other_data(current, tmp_path):
    summary = staging.read_summary(current)
    require_validated(current, summary)
    other = _stage(current, _cats_and_dogs(tmp_path / "i"))
    with pytest.raises(ValueError, match=rf"summary's data_hash {other['data_hash']}.*{current}"):
        require_validated(current, other)  # e.g. new shards copied next to an old summary
    with pytest.raises(ValueError, match="differ from the validation summary"):
        require_validated(current, {**summary, "counts": {"train": {}}})


def test_one_ingestion_or_commit_of_a_staging_folder_at_a_time(current, tmp_path):
    source = _cats_and_dogs(tmp_path / "i")
    with staging.exclusive(staging.staging_dir(current)):
        with pytest.raises(RuntimeError, match="another ingestion or validation is using"):
            _stage(current, source)
        with pytest.raises(RuntimeError, match="another ingestion or validation is using"):
            staging.commit(current, staging.read_summary(current))
    staging.commit(current, _stage(current, source))  # free again


def test_an_interrupted_two_rename_swap_is_recovered(current):
    before = _hashes(current)
    current.rename(current.with_name(".shards.previous"))  # killed between the two renames
    staging.recover(current)
    assert _hashes(current) == before


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from visprompt.data import shards, staging
    from visprompt.data.ingest import ingest
    from visprompt.data.sources import load_source

    write_json, chunks = shards.write_json, []
    def dying_write_json(path, data):  # SIGKILL right after the 3rd finished chunk
        write_json(path, data)
        if path.parent.name == "chunks":
            chunks.append(path)
            if len(chunks) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
    shards.write_json = dying_write_json
    source = load_source("imagefolder", {"root": sys.argv[1]})
    fractions = {"train": 0.5, "val": 0.25, "test": 0.25}
    ingest(source, 8, fractions, 0, staging.staging_dir(sys.argv[2]), chunk_size=4)
    """
)


def test_sigkill_mid_ingestion_keeps_the_current_version_and_resumes(current, tmp_path):
    before = _hashes(current)
    root = _folder(tmp_path / "images", 24)
    child = subprocess.run(
        [sys.executable, "-c", KILLER, str(root), str(current)], capture_output=True, text=True
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert _hashes(current) == before  # manifest, shards and summary exactly as they were
    staged = staging.staging_dir(current)
    assert len(list((staged / ".work" / "chunks").iterdir())) == 3
    assert not (staged / "dataset.json").exists()  # not complete: never taken as a version

    source = load_source("imagefolder", {"root": str(root)})
    _, report = ingest(source, 8, FRACTIONS, 0, staged, chunk_size=4)
    assert report["chunks_resumed"] == 3  # 24 images in chunks of 4: 3 of 6 not redone
    ingest(source, 8, FRACTIONS, 0, tmp_path / "fresh", chunk_size=4)
    fresh, resumed = _hashes(tmp_path / "fresh"), _hashes(staged)
    assert {k: v for k, v in resumed.items() if ".work" not in k} == {
        k: v for k, v in fresh.items() if ".work" not in k
    }
    assert json.loads((staged / "dataset.json").read_text())["counts"]["train"]
