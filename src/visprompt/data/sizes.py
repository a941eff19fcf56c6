"""Image sizes from the configuration: each backbone states its input side once, and the
data's side derives from those (or is checked against them) before any work starts.

Torch-free and free of the run list, so ingestion's code is only this and `data/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ConfigError(ValueError):
    """A configuration mistake; the message is the whole story (file, field, value, fix)."""


def stated_image_size(backbone_params: Mapping[str, Any], key: str) -> int | None:
    """The input side configured for backbone `key` (its model entry's `image_size`, or a
    ViT's `model_kwargs.img_size`); None when timm's own default applies."""
    model = (backbone_params.get("build") or {}).get(key)
    entry = (backbone_params.get("models") or {}).get(model) if isinstance(model, str) else None
    entry = entry or {}
    size = entry.get("image_size") or (entry.get("model_kwargs") or {}).get("img_size")
    return int(size) if size else None


def data_image_size(data: Mapping[str, Any], backbone: Mapping[str, Any]) -> int:
    """The shards' side: `data_ingestion.image_size`, or (null) the largest input size of the
    experiment's backbones; an explicit size none of them takes is refused (it would be
    resized away on the device)."""
    build = backbone.get("build") or {}
    sizes = {k: size for k in build if (size := stated_image_size(backbone, k)) is not None}
    given = data.get("image_size")
    if given is None and not sizes:
        raise ConfigError(
            "parameters_data_ingestion.yml: data_ingestion.image_size is null and no backbone "
            "states its input size: set backbone.models.<model>.image_size or the data's size"
        )
    if given is None:
        return max(sizes.values())
    if sizes and int(given) not in sizes.values():
        largest = build[max(sizes, key=sizes.__getitem__)]
        stated = ", ".join(f"{key}: {size} px" for key, size in sizes.items())
        raise ConfigError(
            f"parameters_data_ingestion.yml: data_ingestion.image_size is {given}, but no "
            f"backbone of this experiment takes {given} px inputs ({stated}): the shards would "
            "be resized to those sizes on the device. Fix: state the input size once, where "
            f"the backbone is (e.g. backbone.models.{largest}.image_size: {given} in "
            "parameters_backbone.yml), and set data_ingestion.image_size: null (the shards "
            "then follow the largest backbone size)"
        )
    return int(given)
