"""The `visprompt` console command; one argparse subcommand per task.

`visprompt pgn-invert`: the client side of PGN's input-space deployment. It rebuilds a saved
PGN artifact around its backbone and writes, for each input image, the prompted PNG an
unmodified backbone with the trained head classifies (see `methods.prompt_inversion`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

from visprompt import backbones, methods
from visprompt.atomic import atomic_path
from visprompt.data.transforms import to_model_input
from visprompt.methods.pgn import PromptGenerationNetwork
from visprompt.methods.prompt_inversion import PromptClient, to_uint8
from visprompt.pipelines import kedro_run
from visprompt.progress import progress_bar

#: Kedro imports `<package>.cli` for project-specific `kedro` subcommands and requires a click
#: group named `cli` in it: the project's `run` (Kedro's, with one-paragraph config errors).
cli = click.Group(commands=[kedro_run.run])

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def image_paths(inputs: Sequence[Path]) -> list[Path]:
    """Files as given, directories expanded to their image files (sorted); missing is an error."""
    paths: list[Path] = []
    for item in inputs:
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"input image not found: {item}")
    stems = [p.stem for p in paths]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ValueError(f"several inputs would write the same output name: {clashes}")
    if not paths:
        raise ValueError(f"no image files in {[str(i) for i in inputs]}")
    return paths


def load_pgn(artifact: Path, backbone: torch.nn.Module) -> PromptGenerationNetwork:
    """A saved PGN artifact around `backbone`; another method's artifact is refused."""
    model = methods.load(artifact, backbone)
    if not isinstance(model, PromptGenerationNetwork):
        raise ValueError(f"{artifact} holds a '{model.name}' artifact; pgn-invert needs 'pgn'")
    return model.eval()


@torch.no_grad()
def write_prompted_images(client: PromptClient, paths: Sequence[Path], out: Path) -> list[Path]:
    """Resize each image to the model's input size, prompt it, write `<out>/<stem>.png`."""
    size = client.inverter.patch_size * client.grid_width
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in progress_bar(paths, desc="pgn-invert", unit="img"):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        batch = torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0)
        images = to_model_input(batch, size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        prompted = to_uint8(client(images))[0].permute(1, 2, 0).numpy()
        target = out / f"{path.stem}.png"
        with atomic_path(target) as tmp:
            Image.fromarray(prompted).save(tmp, format="PNG")
        written.append(target)
    return written


def _backbone(args: argparse.Namespace) -> tuple[torch.nn.Module, dict | None]:
    """(backbone, normalisation): from --spec (with its data_config) or --backbone/--weights."""
    if args.spec is None:
        if args.weights is None:
            raise ValueError("--backbone needs --weights (a local file: nothing is downloaded)")
        kwargs = args.backbone_kwargs
        return backbones.create_backbone(args.backbone, weights=args.weights, **kwargs), None
    specs = json.loads(args.spec.read_text())
    if args.key not in specs:
        raise ValueError(f"--key '{args.key}' is not in {args.spec}; keys: {sorted(specs)}")
    return backbones.from_spec(specs[args.key]), specs[args.key].get("data_config")


def _pgn_invert(args: argparse.Namespace) -> int:
    backbone, normalisation = _backbone(args)
    client = PromptClient.from_pgn(load_pgn(args.artifact, backbone), normalisation)
    written = write_prompted_images(client, image_paths(args.images), args.out)
    print(f"wrote {len(written)} prompted image(s) to {args.out}")
    return 0


def _json_object(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"img_size\": 32}'")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visprompt", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    invert = commands.add_parser(
        "pgn-invert",
        help="write PGN-prompted PNG images for an unmodified backbone (prompt inversion)",
    )
    invert.add_argument("images", nargs="+", type=Path, help="image files or folders")
    invert.add_argument("--artifact", type=Path, required=True, help="saved pgn artifact dir")
    source = invert.add_mutually_exclusive_group(required=True)
    source.add_argument("--backbone", help="timm model name of the backbone (with --weights)")
    source.add_argument(
        "--spec", type=Path, help="backbone_specs JSON of the backbone pipeline (with --key)"
    )
    invert.add_argument("--key", default="vit", help="backbone key in --spec (default: vit)")
    invert.add_argument(
        "--backbone-kwargs",
        type=_json_object,
        default={},
        help="timm create_model keyword arguments as JSON (as in backbone_specs model_kwargs)",
    )
    invert.add_argument("--weights", type=Path, help="backbone weights file (safetensors)")
    invert.add_argument("--out", type=Path, required=True, help="folder for the PNG images")
    invert.set_defaults(func=_pgn_invert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `visprompt` console script; errors exit 2 with one clear line."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, KeyError) as error:
        print(f"visprompt {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
