"""VP's options."""

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from visprompt.methods.config import Family, MethodConfig


class VPConfig(MethodConfig):
    """`design` of the pixel prompt, `prompt_size` (None: 30 scaled from 224 px to
    image_size), `image_size` (None: the backbone's input size), `output` (a new `head`,
    or a label mapping on the source head)."""

    method: ClassVar[str] = "vp"
    family: ClassVar[Family] = "input-space prompts"

    design: Literal["pad", "fixed_patch", "random_patch"] = "pad"
    prompt_size: Annotated[int, Field(ge=1)] | None = None
    image_size: Annotated[int, Field(ge=1)] | None = None
    output: Literal["head", "first_k", "frequency", "iterative"] = "head"
