"""data_validation through Kedro's runner with the project's hooks and a real MLflow store:
a version becomes current only when it passed; a failing one changes nothing current."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow
import pytest
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.io.core import DatasetError
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from PIL import Image
from pipeline_kit import project_catalog

from visprompt.data.shards import require_validated
from visprompt.data.validation import DataValidationError
from visprompt.hooks import DataTrackingHook
from visprompt.pipelines.data_ingestion import create_pipeline as ingestion
from visprompt.pipelines.data_validation import create_pipeline as validation
from visprompt.pipelines.datasets import (
    ShardsDataset,
    StagedManifestDataset,
    StagingDataset,
    ValidationSummaryDataset,
    ValidationTargetDataset,
)

REPORTS = "reports/data/08_reporting"
INGEST = {
    "source": "synthetic",
    "image_size": 16,
    "split": {"seed": 0, "fractions": {"train": 0.6, "val": 0.2, "test": 0.2}},
    "sources": {"synthetic": {"num_classes": 3, "num_images": 30, "image_size": 16, "seed": 2}},
}
VALIDATE = {
    "required_columns": ["path", "label", "split", "sha256", "width", "height", "bytes", "error"],
    "non_null_columns": ["path", "label", "split"],
    "splits": ["train", "val", "test"],
    "min_train_images_per_class": 3,
    "width": {"min": 8, "max": 64},
    "height": {"min": 8, "max": 64},
}


def run_both(
    tmp_path: Path, ingest: dict, pipeline: Pipeline | None = None, rules: dict = VALIDATE
) -> tuple[DataCatalog, str]:
    """`pipeline` (default: ingestion then validation) with the shard entries in tmp_path and
    the project's report entries (kedro-mlflow logs them) under tmp_path/reports."""
    catalog = DataCatalog(
        {
            "params:data_ingestion": MemoryDataset(ingest),
            "params:backbone": MemoryDataset({}),  # the ingestion states its own image_size
            "params:data_validation": MemoryDataset(rules),
            "shards_staging": StagingDataset(str(tmp_path / "shards")),
            "staged_manifest": StagedManifestDataset(str(tmp_path / "shards")),
            "shards_to_validate": ValidationTargetDataset(str(tmp_path / "shards")),
            "shards": ShardsDataset(str(tmp_path / "shards")),
            "validation_summary": ValidationSummaryDataset(str(tmp_path / "shards")),
        }
    )
    names = ["ingestion_report", "validation_report", "validation_data_docs"]
    reports = project_catalog(names, tmp_path / "reports")
    for name in names:
        catalog[name] = reports.get(name)
    hooks = _create_hook_manager()
    hooks.register(DataTrackingHook())
    with mlflow.start_run() as run:
        try:
            SequentialRunner().run(
                pipeline or ingestion() + validation(), catalog, hook_manager=hooks
            )
        finally:
            run_id = run.info.run_id
    return catalog, run_id


def test_valid_data_gives_summary_and_mlflow_statistics(tmp_path, mlflow_store):
    catalog, run_id = run_both(tmp_path, INGEST)
    summary = catalog.load("validation_summary")
    assert summary["success"] and summary["num_images"] == 30 and summary["failed_rules"] == []
    assert sum(summary["counts"]["train"].values()) == 18 and len(summary["data_hash"]) == 64
    require_validated(catalog.load("shards"), summary)  # what training checks
    assert not (tmp_path / ".shards.staging").exists()
    run = mlflow.get_run(run_id)
    assert run.data.tags["data_hash"] == summary["data_hash"]
    assert run.data.metrics["data.validation.success"] == 1.0
    assert run.data.metrics["data.images.train"] == 18
    assert (
        run.data.metrics["data.images.test.disk_solid"] == summary["counts"]["test"]["disk_solid"]
    )
    artifacts = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="data")
    assert json.loads(Path(artifacts, "validation", "report.json").read_text())["success"]
    assert Path(artifacts, "validation", "data_docs", "index.html").is_file()
    assert json.loads(Path(artifacts, "ingestion", "report.json").read_text())["num_records"] == 30


def _image_folder(root: Path, broken: bool = False) -> dict:
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (12, 12), (i * 40, 10, 200 if label == "a" else 0)).save(
                root / label / f"{i}.png"
            )
    if broken:
        (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 10)
    return {
        **INGEST,
        "source": "imagefolder",
        "split": {"seed": 0, "fractions": {"train": 0.75, "test": 0.25}},
        "sources": {"imagefolder": {"root": str(root)}},
    }


def _hashes(directory: Path) -> dict[str, str]:
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _record(run_id: str) -> tuple:
    run = mlflow.get_run(run_id)
    artifacts = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="data")
    return run.data.metrics, run.data.tags, run.data.params, _hashes(Path(artifacts))


def test_bad_data_stops_the_run_and_keeps_the_previous_version(tmp_path, mlflow_store):
    _, good_id = run_both(tmp_path, INGEST)  # a good version first
    good, before = _record(good_id), _hashes(tmp_path / "shards")
    ingest = _image_folder(tmp_path / "images", broken=True)
    with pytest.raises(DataValidationError, match=r"rule decodable.*a/broken\.jpg") as error:
        run_both(tmp_path, ingest)
    assert "fix: replace or remove these files" in str(error.value)
    report = json.loads((tmp_path / REPORTS / "validation/report.json").read_text())
    assert report["success"] is False and report["rules"]["decodable"] is False
    assert (tmp_path / REPORTS / "validation/data_docs/index.html").is_file()
    # manifest, shards and summary of the previous version exactly as they were
    assert _hashes(tmp_path / "shards") == before
    assert JSONDataset(filepath=str(tmp_path / "shards" / "summary.json")).load()["success"]
    assert _record(good_id) == good  # and its MLflow record too
    last = mlflow.search_runs(max_results=1, order_by=["start_time DESC"], output_format="list")
    assert last[0].data.tags["data_validation"] == "failed" and last[0].info.run_id != good_id


def test_an_empty_folder_fails_clearly_and_replaces_nothing(tmp_path, mlflow_store):
    run_both(tmp_path, INGEST)
    before = _hashes(tmp_path / "shards")
    ingest = _image_folder(tmp_path / "images")
    for image in (tmp_path / "images").rglob("*.png"):
        image.unlink()
    with pytest.raises(DataValidationError, match=r"rule not_empty: 1 bad: rows \(0\)"):
        run_both(tmp_path, ingest)
    assert _hashes(tmp_path / "shards") == before


def test_first_failing_ingestion_leaves_no_current_version(tmp_path, mlflow_store):
    with pytest.raises(DataValidationError, match="rule decodable"):
        run_both(tmp_path, _image_folder(tmp_path / "images", broken=True))
    assert not (tmp_path / "shards").exists()  # nothing downstream can start
    with pytest.raises(DatasetError, match="no validated dataset yet"):
        ValidationSummaryDataset(str(tmp_path / "shards")).load()


def test_validation_alone_rechecks_the_committed_version_in_place(tmp_path, mlflow_store):
    """After a finished ingestion nothing is staged: `kedro run --pipelines data_validation`
    validates the current version again, and a pass leaves its files byte for byte."""
    run_both(tmp_path, INGEST)
    before = _hashes(tmp_path / "shards")
    mtime = (tmp_path / "shards" / "summary.json").stat().st_mtime_ns
    catalog, _ = run_both(tmp_path, INGEST, validation())
    assert _hashes(tmp_path / "shards") == before
    assert (tmp_path / "shards" / "summary.json").stat().st_mtime_ns == mtime
    assert catalog.load("validation_summary")["success"]
    # stricter rules now fail the same data: the report says so, the version stays as it was
    strict = VALIDATE | {"min_train_images_per_class": 1000}
    with pytest.raises(DataValidationError, match="min_train_images_per_class"):
        run_both(tmp_path, INGEST, validation(), strict)
    assert _hashes(tmp_path / "shards") == before


def test_validation_with_nothing_ingested_says_which_pipeline_runs_first(tmp_path, mlflow_store):
    with pytest.raises(DatasetError, match=r"run `kedro run --pipelines data_ingestion` first"):
        run_both(tmp_path, INGEST, validation())
