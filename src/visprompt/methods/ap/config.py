"""AP's options."""

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from visprompt.methods.config import Family, MethodConfig


class APConfig(MethodConfig):
    """`layer` (required): a module path (`layer4`, `layer3.5`, `blocks.2`, `patch_embed`,
    `stages.2`, or a module inside a block such as `layer3.1.bn2`); `granularity`: `full`
    (δ has the activation's shape, C×H×W or N×D with N counting CLS/register tokens) or
    `channel` (δ ∈ R^C or R^D on the channel axis: axis 1 for NCHW maps, the last axis for
    tokens and channels-last maps); `image_size`: the side a `full` δ is probed at (None:
    the backbone's)."""

    method: ClassVar[str] = "ap"
    family: ClassVar[Family] = "activation prompts"

    layer: str | None = None
    granularity: Literal["full", "channel"] = "full"
    image_size: Annotated[int, Field(ge=1)] | None = None
