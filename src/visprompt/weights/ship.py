"""Ship a built backbone's weights with the project: copy them and write their provenance.

`make pretrain-vit` pretrains the embedded tiny ViT once and calls this to put the result
where the `file` source finds it, beside `<name>.provenance.json` (origin, source accuracy,
sha256, recipe, machine) that `sources.file_provenance` reads back. Later runs load those
exact bytes, so every machine adapts the same backbone instead of its own pretraining.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
import yaml

from visprompt import atomic, backbones
from visprompt.profiling.machine import describe_machine
from visprompt.weights.sources import provenance_path


def provenance(spec: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
    """The record of how `spec`'s weights were made (the fields `file_provenance` reads)."""
    made = {k: spec[k] for k in ("sha256", "origin", "architecture", "model_kwargs", "pretrain")}
    machine = describe_machine(torch.device("cpu"))
    return made | {"recipe": recipe, "machine": machine, "command": "make pretrain-vit"}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=Path, required=True, help="backbone specs.json")
    parser.add_argument("--key", required=True, help="the backbone key in specs.json (vit)")
    parser.add_argument("--to", type=Path, required=True, help="destination weights file")
    parser.add_argument(
        "--recipe", type=Path, help="parameters_backbone.yml whose backbone.pretrain made them"
    )
    args = parser.parse_args()
    spec = json.loads(args.specs.read_text())[args.key]
    recipe = yaml.safe_load(args.recipe.read_text())["backbone"]["pretrain"] if args.recipe else {}
    path = ship(spec, args.to, recipe)
    print(f"{path}: sha256 {spec['sha256']}, source val top-1 {spec['pretrain']['best_val_top1']}")


if __name__ == "__main__":
    main()
