"""`python -m visprompt.registry {status,rollback} --name NAME`, `relocate --from DIR`, or
`serve --model models:/NAME@champion [--host H] [--port P]`.

- status: a short table (one row per version: run, method, metric, smoke accuracy, status,
  aliases, description); `--json` for every tag.
- rollback: first verifies the previous champion (checksums, smoke test) and refuses a
  broken one.
- relocate: on a deployment host, after copying the whole SQLite store folder (mlflow.db
  and its artifact root) from DIR: point the copy's recorded artifact locations at the copy.
- serve: one version over HTTP (MLflow's scoring app), refusing a body over the version's
  max_request_bytes before reading it.

Uses MLFLOW_TRACKING_URI (default: the project's embedded store).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import mlflow
from mlflow.tracking import MlflowClient

from visprompt.registry.promotion import CHAMPION, HISTORY_TAG, SMOKE_TAG, STATUS_TAG, rollback
from visprompt.registry.relocate import relocate
from visprompt.registry.serving import serve_version

DEFAULT_URI = "sqlite:///mlflow/mlflow.db"


def status(name: str) -> dict:
    """Aliases, champion history and every version's tags and description (the --json dump)."""
    client = MlflowClient()
    model = client.get_registered_model(name)
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    return {
        "name": name,
        "aliases": dict(model.aliases),
        HISTORY_TAG: json.loads(model.tags.get(HISTORY_TAG, "[]")),
        "versions": {
            v.version: {k: v.tags[k] for k in sorted(v.tags)}
            | ({"description": v.description} if v.description else {})
            for v in versions
        },
    }


def status_table(state: dict) -> str:
    """The registry state as a few lines a person reads: one row per version (the hashes
    stay in `--json`)."""
    aliases: dict[str, list[str]] = {}
    for alias, version in state["aliases"].items():
        aliases.setdefault(str(version), []).append(alias)
    head = ["version", "run", "method", "val(mean)", "smoke", "status", "aliases", "description"]
    rows = [head]
    for version, tags in state["versions"].items():
        metric = next((k for k in sorted(tags) if k.endswith("_seed_mean")), "")
        rows.append(
            [f"v{version}", tags.get("run", ""), tags.get("method", "")]
            + [_short(tags.get(metric, "")), _short(tags.get(SMOKE_TAG, ""))]
            + [tags.get(STATUS_TAG, ""), ",".join(sorted(aliases.get(str(version), [])))]
            + [tags.get("description", "")]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)] + [0]
    return "\n".join(
        [
            f"{state['name']}: champion v{state['aliases'].get(CHAMPION, '-')}, "
            f"history {state[HISTORY_TAG]}, {len(rows) - 1} versions"
        ]
        + ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    )


def _short(value: str) -> str:
    """A float tag at 4 decimals; anything else as it is."""
    try:
        return f"{float(value):.4f}"
    except ValueError:
        return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m visprompt.registry",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["status", "rollback", "relocate", "serve"])
    parser.add_argument("--name", help="registered model name (status, rollback)")
    parser.add_argument(
        "--from", dest="old_root", help="relocate: the folder that held the store when written"
    )
    parser.add_argument(
        "--to", dest="new_root", help="relocate: the copy's folder (default: the database's)"
    )
    parser.add_argument("--json", action="store_true", help="status: every tag, as JSON")
    parser.add_argument("--model", help="serve: the version, e.g. models:/NAME@champion")
    parser.add_argument("--host", default="127.0.0.1", help="serve: address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="serve: port (5000)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_TRACKING_URI", DEFAULT_URI)
    if args.command == "serve":
        if not args.model:
            parser.error("serve needs --model, e.g. models:/NAME@champion")
        serve_version(args.model, args.host, args.port)
        return
    if args.command == "relocate":
        if not args.old_root:
            parser.error("relocate needs --from, the folder that held the store when written")
        changed = relocate(mlflow.get_tracking_uri(), args.old_root, args.new_root)
        print(json.dumps({"relocated": changed}, indent=2))
        return
    if not args.name:
        parser.error(f"{args.command} needs --name, the registered model name")
    if args.command == "rollback":
        version = rollback(args.name)
        print(f"{CHAMPION} of '{args.name}' is now version {version}")
    state = status(args.name)
    print(json.dumps(state, indent=2) if args.json else status_table(state))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError, RuntimeError) as err:  # one paragraph, not a traceback
        sys.exit(f"python -m visprompt.registry: {err}")
