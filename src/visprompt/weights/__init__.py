"""Where a backbone's weights come from: the timm hub, a local file, a file shipped in an
installed Python package, or local pretraining. Pure torch/timm (no Kedro, no MLflow)."""

from visprompt.weights.package import PACKAGED, find_file, packaged_backbone
from visprompt.weights.sources import fingerprint, materialise

__all__ = ["PACKAGED", "find_file", "fingerprint", "materialise", "packaged_backbone"]
