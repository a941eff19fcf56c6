"""The `visprompt` console command; one argparse subcommand per task.

`visprompt pgn-invert`: the client side of PGN's input-space deployment, writing for each
input image the prompted PNG that an unmodified backbone with the trained head classifies.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from visprompt.pipelines import kedro_run

#: Kedro imports `<package>.cli` for project-specific `kedro` subcommands and requires a click
#: group named `cli` in it: the project's `run` (Kedro's, with one-paragraph config errors).
cli = click.Group(commands=[kedro_run.run])


def _pgn_invert(args: argparse.Namespace) -> int:
    from visprompt.pgn_invert import pgn_invert  # torch and the methods: only for this command

    return pgn_invert(args)


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
    invert.add_argument(
        "--server", help="also classify them: URL of a plain backbone's features route"
    )
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
