"""Full fine-tuning's options: none."""

from typing import ClassVar

from visprompt.methods.config import MethodConfig


class FullFinetuneConfig(MethodConfig):
    """No options: every backbone weight trains, with a new head."""

    method: ClassVar[str] = "full_finetune"
