"""`csv`: a table with columns path,label[,split]; paths are relative to a root folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from visprompt.data.sources.base import Record, SourceData


def load(path: str, root: str | None = None, classes: list[str] | None = None) -> SourceData:
    """Records of the CSV at `path` (root: the CSV's folder by default). A path resolving
    outside the root is refused naming the row; missing files stay records for validation."""
    table_path = Path(path)
    if not table_path.is_file():
        raise FileNotFoundError(
            f"CSV manifest '{path}' not found; set data_ingestion.sources.csv.path"
        )
    table = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    missing = {"path", "label"} - set(table.columns)
    if missing:
        raise ValueError(
            f"CSV manifest '{path}' lacks column(s) {sorted(missing)}; "
            "expected a header path,label[,split]"
        )
    base = (Path(root) if root is not None else table_path.parent).resolve()
    has_split = "split" in table.columns
    records: list[Record] = []
    for line, row in enumerate(table.itertuples(index=False), start=2):
        file = (base / row.path).resolve()
        if not file.is_relative_to(base):
            raise ValueError(
                f"{path}:{line}: path '{row.path}' escapes the root '{base}'; "
                "write paths relative to the root without '..' (or move the root up)"
            )
        split = (row.split or None) if has_split else None
        records.append(Record(path=row.path, label=row.label, split=split, file=file))
    labels = sorted({r.label for r in records})
    return SourceData(
        records=records,
        classes=list(classes) if classes is not None else labels,
        origin=str(table_path),
    )
