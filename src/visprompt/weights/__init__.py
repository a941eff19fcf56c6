"""Where a backbone's weights come from: the timm hub, a local file, a file shipped in an
installed Python package, or local pretraining. Pure torch/timm (no Kedro, no MLflow)."""

from visprompt.weights.package import PACKAGED, find_file, load_package_weights, packaged_backbone
from visprompt.weights.pretrain import pretrain, synthetic_splits
from visprompt.weights.sources import SOURCES, check_entry, fingerprint, materialise

__all__ = [
    "PACKAGED",
    "SOURCES",
    "check_entry",
    "find_file",
    "fingerprint",
    "load_package_weights",
    "materialise",
    "packaged_backbone",
    "pretrain",
    "synthetic_splits",
]
