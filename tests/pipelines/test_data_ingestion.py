"""data_ingestion through Kedro's runner (it builds the staged version), and the custom
datasets it writes with."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.io.core import DatasetError
from kedro.runner import SequentialRunner

from visprompt.data.shards import ShardDataset, read_classes
from visprompt.pipelines.data_ingestion import create_pipeline
from visprompt.pipelines.datasets import (
    FileTreeDataset,
    ManifestDataset,
    ShardsDataset,
    StagingDataset,
)

PARAMS = {
    "source": "synthetic",
    "image_size": 16,
    "split": {"seed": 3, "fractions": {"train": 0.6, "val": 0.2, "test": 0.2}},
    "sources": {"synthetic": {"num_classes": 3, "num_images": 30, "image_size": 20, "seed": 1}},
    "num_workers": 2,
    "chunk_size": 8,
}


def run_ingestion(tmp_path: Path, params: dict) -> DataCatalog:
    catalog = DataCatalog(
        {
            "params:data_ingestion": MemoryDataset(params),
            "params:backbone": MemoryDataset({}),  # image_size null: the backbones' largest
            "shards_staging": StagingDataset(str(tmp_path / "shards")),
            "staged_manifest": ManifestDataset(str(tmp_path / ".shards.staging/manifest.csv")),
            "ingestion_report": MemoryDataset(),
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    return catalog


def test_pipeline_stages_manifest_shards_and_report(tmp_path):
    catalog = run_ingestion(tmp_path, PARAMS)
    shards = catalog.load("shards_staging")
    assert shards == str(tmp_path / ".shards.staging")
    assert not (tmp_path / "shards").exists()  # current only after validation
    manifest = catalog.load("staged_manifest")
    assert len(manifest) == 30 and set(manifest["split"]) == {"train", "val", "test"}
    assert read_classes(shards) == ["disk_solid", "ring_stripes", "square_checker"]
    sizes = {s: len(ShardDataset(shards, s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 18, "val": 6, "test": 6}
    image, label = ShardDataset(shards, "train")[0]
    assert tuple(image.shape) == (3, 16, 16) and 0 <= label < 3
    report = catalog.load("ingestion_report")
    assert report["num_in_shards"] == 30 and report["conversions"]["total"] == 0


def test_same_params_give_identical_bytes(tmp_path):
    run_ingestion(tmp_path / "a", PARAMS)
    run_ingestion(tmp_path / "b", PARAMS)
    for name in ("manifest.csv", "images_train.npy", "labels_test.npy", "dataset.json"):
        name = f".shards.staging/{name}"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_manifest_dataset_keeps_text_as_text(tmp_path):
    dataset = ManifestDataset(str(tmp_path / "m.csv"))
    frame = pd.DataFrame({"path": ["a"], "label": ["01"], "sha256": ["12e3"], "error": [None]})
    dataset.save(frame)
    loaded = dataset.load()
    assert loaded["label"].tolist() == ["01"] and loaded["sha256"].tolist() == ["12e3"]
    assert loaded["error"].isna().all()


def test_shards_dataset_is_read_only(tmp_path):
    dataset = ShardsDataset(str(tmp_path / "shards"))
    assert not dataset.exists()
    with pytest.raises(DatasetError, match="does not exist yet.*data_ingestion,data_validation"):
        dataset.load()
    with pytest.raises(DatasetError, match="replaced only by a validated version"):
        dataset.save(str(tmp_path / "elsewhere"))
    assert not (tmp_path / "shards").exists()


def test_file_tree_dataset_refuses_escaping_paths(tmp_path):
    dataset = FileTreeDataset(str(tmp_path / "docs"))
    dataset.save({"index.html": b"<html/>", "static/a.css": b"x"})
    assert (tmp_path / "docs" / "static" / "a.css").read_bytes() == b"x"
    with pytest.raises(DatasetError, match="outside the dataset's folder"):
        dataset.save({"../evil.txt": b"x"})
    assert not (tmp_path / "evil.txt").exists()
    assert (tmp_path / "docs" / "index.html").read_bytes() == b"<html/>"
