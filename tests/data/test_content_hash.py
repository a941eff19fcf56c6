"""Training checks the data's content, not its counts: two training labels of different
classes swapped in the shard files after validation (every count unchanged) are refused with
one paragraph that says to rerun data validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from visprompt.data import shards, staging
from visprompt.data.ingest import ingest
from visprompt.data.sizes import ConfigError
from visprompt.data.sources import load_source
from visprompt.pipelines.data_validation.nodes import require_valid, validate
from visprompt.pipelines.training.nodes import train_run
from visprompt.training.runs import RunSpec

SYNTHETIC = {"num_classes": 3, "num_images": 30, "image_size": 16, "seed": 2}
FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
VALIDATE = {
    "required_columns": ["path", "label", "split", "sha256", "width", "height", "bytes", "error"],
    "non_null_columns": ["path", "label", "split"],
    "splits": ["train", "val", "test"],
    "min_train_images_per_class": 3,
    "width": {"min": 8, "max": 64},
    "height": {"min": 8, "max": 64},
}


def _validated(tmp_path: Path) -> tuple[Path, dict]:
    """A current version made the project's way: ingestion, the validation nodes, commit."""
    final = tmp_path / "shards"
    staged = staging.staging_dir(final)
    manifest, _ = ingest(load_source("synthetic", SYNTHETIC), 16, FRACTIONS, 0, staged)
    report, _, result = validate(manifest, str(staged), VALIDATE)
    summary = require_valid(report, result)
    staging.commit(final, summary)
    return final, summary


def test_swapped_training_labels_with_equal_counts_are_refused(tmp_path: Path) -> None:
    final, summary = _validated(tmp_path)
    # validation passed on the hash ingestion recorded: the one training recomputes
    assert summary[shards.CONTENT] == shards.content_sha256(final)
    shards.require_validated(final, summary)

    counts = shards.label_counts(final)
    labels = np.load(final / "labels_train.npy")
    i = 0
    j = int(np.flatnonzero(labels != labels[i])[0])  # a label of another class
    labels[[i, j]] = labels[[j, i]]
    shards.save_array(final / "labels_train.npy", labels)
    assert shards.label_counts(final) == counts  # what the old check compared

    spec = RunSpec(name="lp", method="linear_probe", backbone="vit")
    with pytest.raises(ConfigError) as error:
        train_run(spec, 0, {}, {}, str(tmp_path / "ckpt"), str(final), summary, {})
    message = str(error.value)
    assert "\n" not in message  # one paragraph
    assert str(final) in message and "shards_sha256" in message
    assert "Rerun data validation" in message and "data_validation" in message
    assert not (tmp_path / "ckpt").exists()  # refused before any work


def test_the_digest_is_read_once_per_file_version(tmp_path: Path, monkeypatch) -> None:
    """Nodes of one run compare cheaply: a second check reads no array again."""
    final, summary = _validated(tmp_path)
    shards.require_validated(final, summary)
    monkeypatch.setattr(shards, "split_digest", lambda *a: pytest.fail("re-read"))
    shards.require_validated(final, summary)
