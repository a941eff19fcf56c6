"""Ship a pretrained backbone's weights with the project: pretrain, copy, write provenance.

`make pretrain-vit` runs `python -m visprompt.weights.ship --model vit_fmnist --model
vit_fmnist_mae`: each `backbone.models` entry is pretrained with its recipe (its `pretrain`
source only, no MLflow) and its weights land where its `file` source finds them, beside
`<name>.provenance.json` (origin, the pretraining's figures, sha256, recipe, machine) that
`sources.file_provenance` reads back. Later runs load those exact bytes, so every machine
adapts the same backbone instead of its own pretraining.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from visprompt import atomic, backbones
from visprompt.profiling.machine import describe_machine
from visprompt.weights.sources import materialise, provenance_path, recipe

ROOT = Path(__file__).resolve().parents[3]


def provenance(spec: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
    """The record of how `spec`'s weights were made (the fields `file_provenance` reads)."""
    made = {k: spec[k] for k in ("sha256", "origin", "architecture", "model_kwargs", "pretrain")}
    machine = describe_machine(torch.device("cpu"))
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    return made | {
        "recipe": recipe,
        "machine": f"{machine}; OMP_NUM_THREADS={threads}",
        "command": "make pretrain-vit",
    }


def ship(spec: dict[str, Any], destination: Path, recipe: dict[str, Any]) -> Path:
    """Copy `spec`'s weights file to `destination` and write its provenance record beside it."""
    source = Path(spec["weights_path"])
    if backbones.sha256_file(source) != spec["sha256"]:
        raise ValueError(f"{source}: its sha256 differs from the spec's; rebuild the backbone")
    if spec.get("source") != "pretrain":
        raise ValueError(
            f"{source} came from source '{spec.get('source')}', not local pretraining: only "
            "pretrained weights are shipped this way (set weights: [pretrain] for the build)"
        )
    atomic.write_bytes(destination, source.read_bytes())
    record = json.dumps(provenance(spec, recipe), indent=1, sort_keys=True) + "\n"
    atomic.write_text(provenance_path(destination), record)
    return destination


def pretrain_and_ship(params: dict[str, Any], model: str, workdir: Path) -> Path:
    """Pretrain `backbone.models.<model>` of `params` (parameters_backbone.yml's `backbone`)
    with its `pretrain` source only and ship the result to the entry's `file`."""
    models = params.get("models") or {}
    if model not in models or not models[model].get("file"):
        shippable = sorted(k for k, v in models.items() if v.get("file"))
        raise ValueError(
            f"parameters_backbone.yml: backbone.models has no '{model}' with a `file` to ship "
            f"to; shippable models: {', '.join(shippable)}"
        )
    entry = {**models[model], "weights": ["pretrain"]}
    spec = materialise(
        model, entry, params["pretrain"], {}, workdir / "out", workdir / "checkpoints"
    )
    return ship(spec, ROOT / entry["file"], recipe(params["pretrain"], entry))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", action="append", required=True, help="a backbone.models key (repeatable)"
    )
    parser.add_argument(
        "--params", type=Path, default=ROOT / "conf" / "base" / "parameters_backbone.yml"
    )
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text())["backbone"]
    for model in args.model:
        with tempfile.TemporaryDirectory() as workdir:
            path = pretrain_and_ship(params, model, Path(workdir))
        record = json.loads(provenance_path(path).read_text())
        print(f"{path}: sha256 {record['sha256']}, pretraining figures {record['pretrain']}")


if __name__ == "__main__":
    main()
