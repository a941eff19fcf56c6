"""Nodes of data_ingestion: thin calls into visprompt.data."""

from __future__ import annotations

from typing import Any

import pandas as pd

from visprompt.data.ingest import ShardSet, ingest
from visprompt.data.sources import load_source


def ingest_images(params: dict[str, Any]) -> tuple[pd.DataFrame, ShardSet, dict[str, Any]]:
    """Read the source named by `params['source']` with its options from `params['sources']`."""
    kind = params["source"]
    source = load_source(kind, (params.get("sources") or {}).get(kind))
    split = params["split"]
    return ingest(source, int(params["image_size"]), split["fractions"], int(split["seed"]))
