"""Linear probe's options: none."""

from typing import ClassVar

from visprompt.methods.config import MethodConfig


class LinearProbeConfig(MethodConfig):
    """No options: the frozen backbone's pooled features into a new linear head."""

    method: ClassVar[str] = "linear_probe"
