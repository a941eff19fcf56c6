"""Full fine-tuning's options: none."""

from typing import ClassVar

from visprompt.methods.config import MethodConfig


class FullFinetuneConfig(MethodConfig):
    method: ClassVar[str] = "full_finetune"
