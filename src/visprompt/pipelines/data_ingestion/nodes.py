"""Nodes of data_ingestion: thin calls into visprompt.data."""

from __future__ import annotations

from typing import Any

import pandas as pd

from visprompt.data.ingest import ingest
from visprompt.data.sizes import data_image_size
from visprompt.data.sources import load_source


def ingest_images(
    params: dict[str, Any], staging: str, backbone: dict[str, Any] | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Build (or resume) the next dataset version in `staging` from `params['source']`;
    (manifest, report). data_validation swaps it in if it passes."""
    kind = params["source"]
    source = load_source(kind, (params.get("sources") or {}).get(kind))
    split = params["split"]
    return ingest(
        source,
        data_image_size(params, backbone or {}),
        split["fractions"],
        int(split["seed"]),
        staging,
        num_workers=int(params.get("num_workers", 1)),
        chunk_size=int(params.get("chunk_size", 256)),
    )
