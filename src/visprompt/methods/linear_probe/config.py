"""Linear probe's options: none."""

from typing import ClassVar

from visprompt.methods.config import MethodConfig


class LinearProbeConfig(MethodConfig):
    method: ClassVar[str] = "linear_probe"
