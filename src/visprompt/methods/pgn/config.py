"""PGN's options."""

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from visprompt.methods.config import Family, MethodConfig


class PGNConfig(MethodConfig):
    """`num_prompts` (L), `library_size` (M), the generator's base `width` (None: scaled to
    the backbone, `default_width`), `placement` of the tokens (`below` the image, or
    `replace` its last patches). ViT backbones only."""

    method: ClassVar[str] = "pgn"
    family: ClassVar[Family] = "input-space prompts"

    num_prompts: Annotated[int, Field(ge=1)] = 16
    library_size: Annotated[int, Field(ge=1)] = 256
    width: Annotated[int, Field(ge=1)] | None = None
    placement: Literal["below", "replace"] = "below"
