"""Every report in the project's catalog that kedro-mlflow logs: saved once, logged once.

Each `MlflowArtifactDataset` entry of conf/base/catalog_*.yml (tables, Markdown, plots,
JSON reports) saves a small value of its kind inside a real MLflow run (SQLite store); the
file lands under data/ and the same bytes under the entry's artifact_path in the run.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from matplotlib.figure import Figure
from pipeline_kit import ROOT, project_catalog

SAMPLES = {
    "pandas.CSVDataset": lambda: pd.DataFrame({"run": ["a"], "top1": [0.5]}),
    "text.TextDataset": lambda: "| run | top1 |\n",
    "json.JSONDataset": lambda: {"success": True},
    "matplotlib.MatplotlibDataset": Figure,
}


def _logged_entries() -> dict[str, dict]:
    """Every logged entry; an experiment's report (`{experiment}.comparison`) as experiment
    `exp`'s (`exp.comparison`, saved under data/08_reporting/exp/)."""
    entries: dict[str, dict] = {}
    for file in sorted((ROOT / "conf/base").glob("catalog*.yml")):
        text = file.read_text().replace("{experiment}", "exp")
        for name, entry in (yaml.safe_load(text) or {}).items():
            if "{" not in name and entry.get("type", "").endswith("MlflowArtifactDataset"):
                entries[name] = entry
    return entries


LOGGED = _logged_entries()


def test_the_reports_are_logged_by_the_catalog() -> None:
    expected = {"exp.comparison", "exp.comparison_plots", "exp.efficiency", "exp.claims",
                "exp.efficiency_plots", "ap_layer_sweep_plot", "adavipro_sweep_plot",
                "validation_report"}  # fmt: skip
    assert expected <= set(LOGGED)


@pytest.mark.parametrize("name", [n for n, e in LOGGED.items() if e["dataset"]["type"] in SAMPLES])
def test_saving_a_report_logs_its_file(name: str, tmp_path: Path, mlflow_store: str) -> None:
    entry = LOGGED[name]
    catalog = project_catalog([name], tmp_path)
    value = SAMPLES[entry["dataset"]["type"]]()
    with mlflow.start_run() as run:
        catalog.save(name, value)
    local = tmp_path / entry["dataset"]["filepath"]
    logged = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=f"{entry['artifact_path']}/{local.name}"
        )
    )
    assert local.is_file() and logged.read_bytes() == local.read_bytes()
