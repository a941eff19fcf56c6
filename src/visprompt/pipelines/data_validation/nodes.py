"""Nodes of data_validation: `validate` returns the report (saved and logged) before
`require_valid` stops a failing run; only passing data becomes `validation_summary`, whose
save swaps the staged manifest, shards and summary in together.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from visprompt.data import shards as shard_format
from visprompt.data.manifest import dataset_summary
from visprompt.data.validation import DataValidationError, failure_message, validate_manifest


def validate(
    manifest: pd.DataFrame, directory: str, params: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, bytes], dict[str, Any]]:
    """(report, GX data docs files, summary) of the version in `directory` (the staged one,
    else the current one) against the suite."""
    classes = shard_format.read_classes(directory)
    report, docs = validate_manifest(manifest, classes, params)
    summary = {
        "success": report["success"],
        **dataset_summary(manifest, classes),
        "failed_rules": sorted(rule for rule, ok in report["rules"].items() if not ok),
        # what training compares with the arrays it reads (recorded once, by ingestion)
        shard_format.CONTENT: shard_format.recorded_content(directory),
    }
    return {**report, "data_hash": summary["data_hash"]}, docs, summary


def require_valid(report: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Pass the summary on only if validation succeeded; else stop with the failures."""
    if not result["success"]:
        raise DataValidationError(
            failure_message(report) + "\nfull report: the validation_report dataset "
            "(data/08_reporting/validation/report.json, data docs next to it)"
        )
    return result
