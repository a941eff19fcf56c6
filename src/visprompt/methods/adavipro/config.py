"""AdaViPro's options."""

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from visprompt.methods.config import Family, MethodConfig


class AdaViProConfig(MethodConfig):
    """`prompt_size` (None: 30 scaled from 224 px), `image_size` (None: the backbone's),
    `region_size` (None: 32 scaled from 224 px), the mask generator's `embed_dim`, the
    Gumbel temperature `tau0 · tau_decay^epoch`, `edge_channels` and the generator's
    learning-rate scale."""

    method: ClassVar[str] = "adavipro"
    family: ClassVar[Family] = "input-space prompts"

    prompt_size: Annotated[int, Field(ge=1)] | None = None
    image_size: Annotated[int, Field(ge=1)] | None = None
    region_size: Annotated[int, Field(ge=1)] | None = None
    embed_dim: Annotated[int, Field(ge=1)] = 64
    tau0: Annotated[float, Field(gt=0)] = 5.0
    tau_decay: Annotated[float, Field(gt=0, le=1)] = 0.98
    edge_channels: Literal["gray", "rgb"] = "gray"
    generator_lr_scale: Annotated[float, Field(ge=0)] = 1.0
