"""Bias tuning's options: none."""

from typing import ClassVar

from visprompt.methods.config import MethodConfig


class BiasTuningConfig(MethodConfig):
    """No options: every backbone bias trains, with a new head."""

    method: ClassVar[str] = "bias_tuning"
