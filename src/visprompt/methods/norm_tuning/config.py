"""Norm tuning's options: none."""

from typing import ClassVar

from visprompt.methods.config import MethodConfig


class NormTuningConfig(MethodConfig):
    method: ClassVar[str] = "norm_tuning"
