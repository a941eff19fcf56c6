"""`python -m visprompt.serving --model digits@champion --model digits/3 ... [--port 5001]`

The multi-prompt server: each backbone loaded once, every named version on it, bound to
127.0.0.1 only (put a reverse proxy in front to expose it). Aliases are re-resolved every
`--poll-s` seconds: a moved alias is loaded, then swapped in without a restart. Versions
come from MLFLOW_TRACKING_URI (default: the project's embedded store). Request format,
routes and limits: `visprompt.serving.app` and docs/serving.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

import uvicorn

from visprompt.registry.serving import ServingLimits
from visprompt.serving.app import create_app
from visprompt.serving.versions import VersionRef, VersionSet

HOST = "127.0.0.1"
DEFAULT_URI = "sqlite:///mlflow/mlflow.db"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m visprompt.serving",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="NAME@ALIAS or NAME/VERSION to serve (repeat it; or list them in --models-file)",
    )
    parser.add_argument(
        "--models-file", type=Path, help="a text file of NAME@ALIAS / NAME/VERSION, one a line"
    )
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--poll-s", type=float, default=5.0, help="alias re-resolution period")
    defaults = ServingLimits.resolve(None)
    for field in dataclasses.fields(ServingLimits):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=int,
            default=getattr(defaults, field.name),
            help=f"server-wide {field.name} (VISPROMPT_SERVING_{field.name.upper()})",
        )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("MLFLOW_TRACKING_URI", DEFAULT_URI)
    texts = list(args.model)
    if args.models_file is not None:
        lines = args.models_file.read_text().splitlines()
        texts += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    try:
        limits = ServingLimits(
            **{f.name: getattr(args, f.name) for f in dataclasses.fields(ServingLimits)}
        )
        versions = VersionSet([VersionRef.parse(text) for text in texts])
    except ValueError as err:
        print(f"python -m visprompt.serving: error: {err}", file=sys.stderr)
        return 2
    versions.follow(args.poll_s)
    print(f"serving {sorted(versions.describe())} on http://{HOST}:{args.port}", flush=True)
    uvicorn.run(create_app(versions, limits), host=HOST, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
