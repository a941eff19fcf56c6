"""Prompt-init artifacts: `<name>.safetensors` (tensor `prompts`, (layers, p, D)) next to
`<name>.json` (metadata). Both are written atomically (temporary file, then rename)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from visprompt.prompt_init.build import PromptInit

TENSOR_KEY = "prompts"


def save_prompt_init(directory: str | Path, name: str, init: PromptInit) -> Path:
    """Write one init; returns the safetensors path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.safetensors"
    tmp = directory / f".{name}.safetensors.tmp"
    save_file({TENSOR_KEY: init.prompts.contiguous().cpu()}, str(tmp))
    tmp.replace(path)
    meta = directory / f"{name}.json"
    tmp_meta = directory / f".{name}.json.tmp"
    tmp_meta.write_text(json.dumps(init.metadata, indent=2, sort_keys=True))
    tmp_meta.replace(meta)
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
