"""Prompt-init artifacts: `<name>.safetensors` (tensor `prompts`, (layers, p, D)) next to
`<name>.json` (metadata). Both are written atomically (temporary file, then rename)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from visprompt.atomic import atomic_path, write_text
from visprompt.prompt_init.build import PromptInit

TENSOR_KEY = "prompts"


def save_prompt_init(directory: str | Path, name: str, init: PromptInit) -> Path:
    """Write one init; returns the safetensors path."""
    path = Path(directory) / f"{name}.safetensors"
    with atomic_path(path) as tmp:
        save_file({TENSOR_KEY: init.prompts.contiguous().cpu()}, str(tmp))
    write_text(path.with_suffix(".json"), json.dumps(init.metadata, indent=2, sort_keys=True))
    return path


def load_prompts(path: str | Path) -> torch.Tensor:
    """The (layers, p, D) prompts of a prompt-init file, for `build('vpt', init_prompts=...)`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"prompt-init file not found: {path}; run `kedro run --pipelines prompt_init` "
            "(or `dvc pull`)"
        )
    tensors = load_file(str(path))
    if TENSOR_KEY not in tensors or tensors[TENSOR_KEY].ndim != 3:
        raise ValueError(f"{path} is not a prompt-init file (needs a 3-d tensor '{TENSOR_KEY}')")
    return tensors[TENSOR_KEY]


def load_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata JSON written next to a prompt-init safetensors file."""
    return json.loads(Path(path).with_suffix(".json").read_text())
