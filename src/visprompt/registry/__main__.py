"""`python -m visprompt.registry {status,rollback} --name NAME`: inspect or roll back.

Rollback first verifies the previous champion (checksums, smoke test) and refuses a broken one.

Uses MLFLOW_TRACKING_URI (default: the project's embedded store).
"""

from __future__ import annotations

import argparse
import json
import os

from mlflow.tracking import MlflowClient

from visprompt.registry.promotion import CHAMPION, HISTORY_TAG, rollback

DEFAULT_URI = "sqlite:///mlflow/mlflow.db"


def status(name: str) -> dict:
    client = MlflowClient()
    model = client.get_registered_model(name)
    return {
        "name": name,
        "aliases": {alias: version for alias, version in model.aliases.items()},
        HISTORY_TAG: json.loads(model.tags.get(HISTORY_TAG, "[]")),
        "versions": {
            v.version: {k: v.tags[k] for k in sorted(v.tags)}
            for v in client.search_model_versions(f"name='{name}'")
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m visprompt.registry", description=__doc__)
    parser.add_argument("command", choices=["status", "rollback"])
    parser.add_argument("--name", required=True, help="registered model name")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_TRACKING_URI", DEFAULT_URI)
    if args.command == "rollback":
        version = rollback(args.name)
        print(f"{CHAMPION} of '{args.name}' is now version {version}")
    print(json.dumps(status(args.name), indent=2))


if __name__ == "__main__":
    main()
