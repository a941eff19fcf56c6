"""LoRA's options."""

from typing import Annotated, ClassVar

from pydantic import Field

from visprompt.methods.config import MethodConfig


class LoRAConfig(MethodConfig):
    """`rank`, scale `alpha / rank`, `dropout` on the LoRA branch input, `targets` (None:
    the model's `default_targets`; else peft's `target_modules`: module names or suffixes,
    or a regex matched against full paths)."""

    method: ClassVar[str] = "lora"

    rank: Annotated[int, Field(ge=1)] = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] | str | None = None
