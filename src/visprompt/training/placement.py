"""Where work after training runs: the training engine's accelerator and precision, one device.

Evaluation, profiling, SPT token collection and prompt inversion take a `Placement` built
from the same `training_engine` settings as `fit`, so a GPU run is evaluated on the GPU and
a bf16 run is measured in bf16 (not silently on the CPU in fp32). Half precisions run as
autocast: weights stay fp32, matmuls and convolutions run in the half type.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from lightning.fabric import Fabric

#: Fabric precision prefix -> the dtype autocast computes in (absent: full precision).
_HALF = {"bf16": torch.bfloat16, "16": torch.float16}


@dataclass(frozen=True)
class Placement:
    """A device and a Lightning precision string (`32-true`, `bf16-mixed`, `16-mixed`, ...)."""

    device: torch.device
    precision: str = "32-true"

    @classmethod
    def from_engine(cls, engine: Mapping[str, Any]) -> Placement:
        """From `training_engine` settings (accelerator, precision); one device, as Fabric
        resolves it (`auto` picks CUDA when present; `gpu` without one is an error)."""
        precision = str(engine.get("precision", "32-true"))
        fabric = Fabric(accelerator=str(engine.get("accelerator", "cpu")), devices=1,
                        strategy="auto", precision=precision)  # fmt: skip
        return cls(fabric.device, precision)

    @classmethod
    def on(cls, device: str) -> Placement:
        """A named device (`cpu`, `cuda`, `cuda:1`; `auto`: CUDA when present) in fp32."""
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(torch.device(device))

    @property
    def dtype(self) -> torch.dtype | None:
        """The half dtype computations run in, or None for full precision."""
        return _HALF.get(self.precision.split("-")[0])

    def autocast(self) -> AbstractContextManager[Any]:
        """Context for forward passes in this placement's precision."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)
