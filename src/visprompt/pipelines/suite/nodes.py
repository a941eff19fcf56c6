"""Node of the suite pipeline: the suite's tables, saved in the suite's experiment namespace
(data/08_reporting/<experiment>/) and logged to MLflow by the catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from kedro.utils import find_kedro_project

from visprompt.suite import config, report
from visprompt.training.runs import ConfigError


def suite_tables(block: Any) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(suite_seeds, tune_summary, suite_status) of the declared suite (`params:suite`)."""
    if not block:
        raise ConfigError(
            "parameters: no `suite` declaration; run the suite pipeline with a suite recipe: "
            "`kedro run --config pipelines/suite.yml` (docs/suite.md)"
        )
    project = find_kedro_project(Path.cwd()) or Path.cwd()
    return report.collect(config.parse(block), project)
