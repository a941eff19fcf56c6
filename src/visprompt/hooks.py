"""Project hooks: the run list checked before work starts; data reports into MLflow.

`RunListHook` hands the session's parameters to the pipelines' run list as soon as the
context exists (before kedro-mlflow opens a run, before any node), so a configuration
mistake stops `kedro run` within seconds with one message.

kedro-mlflow opens one MLflow run per `kedro run`, logs node parameters and, through the
catalog's MlflowArtifactDatasets, the data reports; these hooks add the figures and tags
derived from them, at the moment each report is saved (so a validation that then fails has
already logged them). Nodes stay free of MLflow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import mlflow
from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.framework.project import pipelines

from visprompt.pipelines import runs


def _key(*parts: Any) -> str:
    """An MLflow metric key from parts (characters MLflow refuses become '_')."""
    return re.sub(r"[^\w\-. /]", "_", ".".join(str(p) for p in parts))


def log_ingestion_report(report: Mapping[str, Any]) -> None:
    metrics = {"data.images": report["num_in_shards"], "data.records": report["num_records"]}
    metrics["data.unreadable"] = len(report["unreadable"])
    metrics["data.converted"] = report["conversions"]["total"]
    for mode, n in report["conversions"]["by_mode"].items():
        metrics[_key("data.converted", mode)] = n
    for split, per_class in report["images_per_split_and_class"].items():
        metrics[_key("data.images", split)] = sum(per_class.values())
        for name, n in per_class.items():
            metrics[_key("data.images", split, name)] = n
    mlflow.log_metrics(metrics)


def log_validation_report(report: Mapping[str, Any]) -> None:
    mlflow.log_metrics(
        {
            "data.validation.success": float(report["success"]),
            "data.validation.failed_expectations": len(report["failures"]),
        }
    )
    mlflow.set_tag("data_hash", report["data_hash"])
    mlflow.set_tag("data_validation", "passed" if report["success"] else "failed")


# Catalog name -> how it is logged when saved.
TRACKED: dict[str, Callable[[Any], None]] = {
    "ingestion_report": log_ingestion_report,
    "validation_report": log_validation_report,
}


class DataTrackingHook:
    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        log = TRACKED.get(dataset_name)
        if log is not None and mlflow.active_run() is not None:
            log(data)


class RunListHook:
    @hook_impl(tryfirst=True)
    def after_context_created(self, context: KedroContext) -> None:
        """Validate the run list of this session's parameters; rebuild pipelines if it moved."""
        if runs.use_parameters(context.config_loader["parameters"]):
            # an earlier session in this process built the pipelines from other parameters
            pipelines.configure(f"{__package__}.pipeline_registry")
