"""AP's options."""

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from visprompt.methods.config import Family, MethodConfig


class APConfig(MethodConfig):
    """`layer`: the module path to prompt (required; e.g. `layer4`, `blocks.2`,
    `layer3.1.bn2`); `granularity`: δ of the activation's shape (`full`) or one value per
    channel (`channel`); `image_size`: the side a `full` δ is probed at (None: the
    backbone's)."""

    method: ClassVar[str] = "ap"
    family: ClassVar[Family] = "activation prompts"

    layer: str | None = None
    granularity: Literal["full", "channel"] = "full"
    image_size: Annotated[int, Field(ge=1)] | None = None
