"""The project's own console settings: telemetry off without any environment variable,
and a logging config that silences per-dataset chatter but keeps warnings and node lines."""

from __future__ import annotations

import logging
import logging.config
import shutil
from pathlib import Path

import pytest
import yaml
from kedro.framework.startup import ProjectMetadata
from kedro_telemetry.plugin import KedroTelemetryHook

ROOT = Path(__file__).resolve().parents[1]


def test_telemetry_is_refused_by_the_project_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("DO_NOT_TRACK", "KEDRO_DISABLE_TELEMETRY"):
        monkeypatch.delenv(variable, raising=False)
    for name in (".telemetry", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    before = (tmp_path / "pyproject.toml").read_bytes()
    metadata = ProjectMetadata(
        tmp_path / "pyproject.toml", "visprompt", "visprompt", tmp_path, tmp_path / "src",
        "1.7.0", None, None,
    )  # fmt: skip
    hook = KedroTelemetryHook()
    hook.before_command_run(metadata, ["run"])
    hook.after_command_run()
    assert hook._consent is False  # no prompt, nothing sent
    assert (tmp_path / "pyproject.toml").read_bytes() == before  # no project_id written


def test_logging_config_keeps_warnings_and_node_lines_not_dataset_chatter() -> None:
    config = yaml.safe_load((ROOT / "conf/logging.yml").read_text())
    logging.config.dictConfig(config)
    try:
        assert not logging.getLogger("kedro.io.data_catalog").isEnabledFor(logging.INFO)
        assert not logging.getLogger("kedro.pipeline.node").isEnabledFor(logging.INFO)
        assert logging.getLogger("kedro.io.data_catalog").isEnabledFor(logging.WARNING)
        assert logging.getLogger("visprompt.run").isEnabledFor(logging.INFO)
        assert not logging.getLogger("mlflow.store.db.utils").isEnabledFor(logging.INFO)
    finally:
        for name in config["loggers"]:
            logging.getLogger(name).setLevel(logging.NOTSET)
