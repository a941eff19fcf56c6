"""Bias tuning's options: none."""

from typing import ClassVar

from visprompt.methods.config import MethodConfig


class BiasTuningConfig(MethodConfig):
    method: ClassVar[str] = "bias_tuning"
