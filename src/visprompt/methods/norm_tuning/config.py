"""Norm tuning's options: none."""

from typing import ClassVar

from visprompt.methods.config import MethodConfig


class NormTuningConfig(MethodConfig):
    """No options: every normalisation layer's affine parameters train, with a new head."""

    method: ClassVar[str] = "norm_tuning"
