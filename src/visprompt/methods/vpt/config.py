"""VPT's options."""

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from visprompt.methods.config import Family, MethodConfig


class VPTConfig(MethodConfig):
    """`variant` (`shallow`: one prompt set; `deep`: one per block), `num_prompts` per set,
    `init` (`random`, or `spt`: the `init_prompts` tensor given to `build`), `dropout` on
    the prompts, `pool_prompts` (include the prompt outputs in average pooling)."""

    method: ClassVar[str] = "vpt"
    family: ClassVar[Family] = "token prompts"

    variant: Literal["shallow", "deep"] = "shallow"
    num_prompts: Annotated[int, Field(ge=1)] = 10
    init: Literal["random", "spt"] = "random"
    dropout: Annotated[float, Field(ge=0, le=1)] = 0.0
    pool_prompts: bool = False
