"""Project hooks: the run list checked before work starts; MLflow beside kedro-mlflow's run.

`DataTrackingHook` names kedro-mlflow's run after the experiment (`digits`, not
`__default__`), logs the data reports' figures when each is saved (before a failing
validation stops the run) and opens one nested run per trained seed as its node starts, named
by the node's namespace (`<run>.seed_<s>`), finished once the catalog saved its artifact (a
Ctrl-C meanwhile closes it as KILLED); a seed whose `run_key` has a finished run reuses that
one and drops the new one. Nodes stay free of MLflow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import mlflow
from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.framework.project import pipelines
from kedro.io import CatalogProtocol
from kedro.pipeline.node import Node

from visprompt.pipelines import runs, tracking


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
    verdict = "passed" if report["success"] else "failed"
    mlflow.set_tags({"data_hash": report["data_hash"], "data_validation": verdict})


# Catalog name -> how it is logged when saved.
TRACKED: dict[str, Callable[[Any], None]] = {
    "ingestion_report": log_ingestion_report,
    "validation_report": log_validation_report,
}


class DataTrackingHook:
    def __init__(self) -> None:
        self._catalog: CatalogProtocol | None = None
        #: artifact dataset name -> the id of its seed's run, open until the artifact is logged
        self._pending: dict[str, str] = {}
        #: the id of the seed run open while its training node runs
        self._training: str | None = None

    @hook_impl
    def after_catalog_created(self, catalog: CatalogProtocol) -> None:
        self._catalog = catalog

    @hook_impl(trylast=True)  # after kedro-mlflow's, which starts the run
    def before_pipeline_run(self, run_params: dict[str, Any], catalog: CatalogProtocol) -> None:
        names = run_params.get("pipeline_names") or run_params.get("pipeline_name") or []
        names = [names] if isinstance(names, str) else list(names)
        try:
            settings = catalog.load("params:experiment") or {}
        except Exception:  # noqa: BLE001 - a catalog without the parameter: no name to give
            return
        if settings.get("name"):
            tracking.name_parent_run(str(settings["name"]), names)

    @hook_impl(trylast=True)  # after kedro-mlflow's: its node params go to the parent run
    def before_node_run(self, node: Node) -> None:
        if f"{node.namespace}.train_summary" in node.outputs:
            self._training = tracking.start_seed_run(node.namespace)

    @hook_impl(tryfirst=True)
    def after_node_run(self, node: Node, outputs: dict[str, Any]) -> None:
        """A trained seed (`<ns>.train_summary` with a `run_key`): its MLflow run's id (a
        finished run of the same key when reused) goes into the summary before it is saved."""
        summary = outputs.get(f"{node.namespace}.train_summary")
        if self._training is None or not isinstance(summary, dict):
            return
        self._training = None
        run_id = tracking.finished_run(summary["run_key"])
        if run_id is None:
            run_id = tracking.record_seed_run(summary, outputs[f"{node.namespace}.history"])
            self._pending[f"{node.namespace}.artifact_dir"] = run_id
        else:
            tracking.end_seed_run("REUSED")
        summary["mlflow_run_id"] = run_id

    @hook_impl
    def on_node_error(self, node: Node) -> None:
        if self._training is not None:
            self._training = None
            tracking.end_seed_run("FAILED")

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if dataset_name in self._pending and self._catalog is not None:
            path = self._catalog.load(dataset_name)  # the saved artifact's folder
            tracking.close_seed_run(self._pending.pop(dataset_name), path)
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
