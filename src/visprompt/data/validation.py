"""Manifest validation with Great Expectations: the suite, its run, a report and a message.

Every expectation carries its rule name (the keys of FIXES, also used by the report and
parameters_data_validation.yml) and fix in `meta`; failures list the offending files or
classes. Decodability comes from the manifest's `error` column, filled by ingestion, so
validation never decodes an image twice.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from visprompt.data.manifest import normalise

FIXES = {
    "not_empty": (
        "the source yielded no images: check data_ingestion.source and its root or path "
        "(class folders must contain image files)"
    ),
    "columns_present": "re-run `kedro run --pipelines data_ingestion` to rebuild the manifest",
    "not_null": "give every row a path, label and split (check the CSV / folder layout)",
    "label_in_classes": "fix the label, or add the class to the source's `classes` list",
    "split_values": "use only the split names train, val, test",
    "min_train_per_class": (
        "add training images for these classes, remove the classes, or lower "
        "data_validation.min_train_images_per_class"
    ),
    "min_classes": (
        "a classifier needs at least 2 classes: add class folders (labels), or lower "
        "data_validation.min_classes"
    ),
    "no_leakage": "remove the duplicate copies so that each image is in one split only",
    "one_label_per_image": (
        "the same image (content hash) is under several labels: keep one copy, under the "
        "right label"
    ),
    "width_bounds": "resize or remove these images, or change data_validation.width bounds",
    "height_bounds": "resize or remove these images, or change data_validation.height bounds",
    "non_empty_file": "replace or remove these empty files",
    "decodable": "replace or remove these files (missing, truncated, corrupt or not an image)",
}


def _leak_column(frame: pd.DataFrame) -> pd.Series:
    """'test+train' for rows whose content hash occurs in several splits, else None."""
    known = frame.dropna(subset=["sha256", "split"])
    splits = known.groupby("sha256")["split"].agg(lambda s: "+".join(sorted(set(s))))
    joined = frame["sha256"].map(splits).astype(object)
    return joined.map(lambda v: v if isinstance(v, str) and "+" in v else None).astype(object)


def _label_conflict_column(frame: pd.DataFrame) -> pd.Series:
    """For rows whose content hash is also under another label: the other (label: path)s."""
    known = frame.dropna(subset=["sha256", "label"])
    copies: dict[str, list[tuple[str, str]]] = {}
    for sha, label, path in zip(known["sha256"], known["label"], known["path"], strict=True):
        copies.setdefault(sha, []).append((label, path))

    def others(sha: Any, label: Any) -> str | None:
        pairs = [f"{lab}: {path}" for lab, path in copies.get(sha, []) if lab != label]
        return "also " + ", ".join(sorted(pairs)) if pairs else None

    values = [
        others(sha, label) for sha, label in zip(frame["sha256"], frame["label"], strict=True)
    ]
    return pd.Series(values, index=frame.index, dtype=object)


def class_table(frame: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Training images per class, every class of the list included (0 for an empty one)."""
    train = frame[frame["split"] == "train"]["label"].value_counts()
    return pd.DataFrame(
        {"class": list(classes), "train_images": [int(train.get(c, 0)) for c in classes]}
    )


def _meta(rule: str) -> dict[str, str]:
    return {"rule": rule, "fix": FIXES[rule]}


def _expectations(config: Mapping[str, Any], classes: Sequence[str], columns: set[str]) -> list:
    """The manifest's expectations; rules on absent columns are left to `columns_present`
    (an expectation on a missing column would only raise)."""
    import great_expectations.expectations as gxe

    def bounds(axis: str) -> dict[str, Any]:
        return {"min_value": config[axis]["min"], "max_value": config[axis]["max"]}

    found = [gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=_meta("not_empty"))]
    found += [
        gxe.ExpectColumnToExist(column=c, meta=_meta("columns_present"))
        for c in config["required_columns"]
    ]
    candidates = [
        (c, "not_null", gxe.ExpectColumnValuesToNotBeNull, {}) for c in config["non_null_columns"]
    ]
    candidates += [
        ("label", "label_in_classes", gxe.ExpectColumnValuesToBeInSet, {"value_set": classes}),
        ("split", "split_values", gxe.ExpectColumnValuesToBeInSet, {"value_set": config["splits"]}),
        ("leak", "no_leakage", gxe.ExpectColumnValuesToBeNull, {}),
        ("label_conflict", "one_label_per_image", gxe.ExpectColumnValuesToBeNull, {}),
        ("width", "width_bounds", gxe.ExpectColumnValuesToBeBetween, bounds("width")),
        ("height", "height_bounds", gxe.ExpectColumnValuesToBeBetween, bounds("height")),
        ("bytes", "non_empty_file", gxe.ExpectColumnValuesToBeBetween, {"min_value": 1}),
        ("error", "decodable", gxe.ExpectColumnValuesToBeNull, {}),
    ]
    return found + [
        cls(column=column, meta=_meta(rule), **kwargs)
        for column, rule, cls, kwargs in candidates
        if column in columns
    ]


def _class_expectations(config: Mapping[str, Any]) -> list:
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectColumnValuesToBeBetween(
            column="train_images",
            min_value=config["min_train_images_per_class"],
            meta=_meta("min_train_per_class"),
        ),
        gxe.ExpectTableRowCountToBeBetween(
            min_value=int(config.get("min_classes", 2)), meta=_meta("min_classes")
        ),
    ]


def _context(docs_dir: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={
            "local": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _run_checkpoint(context, name: str, frame: pd.DataFrame, expectations, key: str):
    import great_expectations as gx

    asset = context.data_sources.add_pandas(name).add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe(name)
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_suite"))
    for expectation in expectations:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch, suite=suite, name=name)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{name}_checkpoint",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=["local"])],
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [key]},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    return [r for run in result.run_results.values() for r in run.results]


def _failure(result, key: str) -> dict[str, Any]:
    config = result.expectation_config
    column = config.kwargs.get("column")
    raw = result.result.get("unexpected_index_list") or []
    items = [{"item": str(entry.get(key)), "value": _plain(entry.get(column))} for entry in raw]
    exception = result.exception_info or {}
    if exception.get("raised_exception"):
        items = [{"item": column, "value": exception.get("exception_message")}]
    elif column is None:  # a table-level expectation: the row count is the value
        items = [{"item": "rows", "value": _plain(result.result.get("observed_value"))}]
    elif not items:  # a missing column: the column is the item
        items = [{"item": column, "value": None}]
    return {
        "rule": config.meta["rule"],
        "expectation": config.type,
        "column": column,
        "count": int(result.result.get("unexpected_count") or len(items)),
        "items": items,
        "fix": config.meta["fix"],
    }


def _plain(value: Any) -> Any:
    """JSON-friendly scalar (numpy numbers and pandas missing values included)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def validate_manifest(
    manifest: pd.DataFrame,
    classes: Sequence[str],
    config: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(report, data docs) of the suite on `manifest`: the report has `success`, per-rule
    `rules` and `failures` (rule, column, count, offending items, fix); data docs are GX's
    HTML site as {relative path: bytes}, for the caller to save."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    frame = normalise(manifest)
    if {"sha256", "split"} <= set(frame.columns):
        frame["leak"] = _leak_column(frame)
    if {"sha256", "label", "path"} <= set(frame.columns):
        frame["label_conflict"] = _label_conflict_column(frame)
    columns = set(frame.columns)
    with tempfile.TemporaryDirectory(prefix="gx_docs_") as tmp:
        docs_dir = Path(tmp)
        context = _context(docs_dir)
        manifest_results = _run_checkpoint(
            context, "manifest", frame, _expectations(config, classes, columns), "path"
        )
        class_results: list = []
        if {"split", "label"} <= columns:
            table = class_table(frame, classes)
            expectations = _class_expectations(config)
            class_results = _run_checkpoint(context, "classes", table, expectations, "class")
        docs = {
            p.relative_to(docs_dir).as_posix(): p.read_bytes()
            for p in sorted(docs_dir.rglob("*"))
            if p.is_file()
        }
    rules: dict[str, bool] = {}
    failures = []
    for results, key in ((manifest_results, "path"), (class_results, "class")):
        for result in results:
            rule = result.expectation_config.meta["rule"]
            rules[rule] = rules.get(rule, True) and bool(result.success)
            if not result.success:
                failures.append(_failure(result, key))
    report = {
        "success": all(rules.values()),
        "num_rows": len(frame),
        "rules": rules,
        "failures": failures,
    }
    return report, docs


def failure_message(report: Mapping[str, Any], max_items: int = 20) -> str:
    """A readable error: per failing rule, the offending files (or classes) and the fix."""
    lines = [f"data validation failed ({len(report['failures'])} failing expectation(s)):"]
    for failure in report["failures"]:
        shown = [
            f"{entry['item']} ({entry['value']})" if entry["value"] is not None else entry["item"]
            for entry in failure["items"][:max_items]
        ]
        more = failure["count"] - len(shown)
        listing = ", ".join(shown) + (f", ... and {more} more" if more > 0 else "")
        target = f" on '{failure['column']}'" if failure["column"] else ""
        lines.append(f"- rule {failure['rule']}{target}: {failure['count']} bad: {listing}")
        lines.append(f"  fix: {failure['fix']}")
    return "\n".join(lines)


class DataValidationError(RuntimeError):
    """The manifest failed validation; the message names the rules, files and fixes."""
