"""Fail when the committed dvc.lock does not match the code and parameters at HEAD.

In a clean clone every stage output is missing (it lives in the DVC remote), so `dvc status`
may report outputs, and dependencies produced by other stages, as deleted or not in cache. A
dependency on a folder that holds other stages' outputs (e.g. `data/07_model_output`) holds only
DVC's own `.gitignore` files in a clean clone, so it reads as "modified": such produced paths are
checked through the stage that writes them, not here. Anything else (a code or config
dependency modified or new, changed parameters, a changed command, a stage missing from the
lock) means someone changed the pipeline without running `dvc repro` (or `dvc commit` after
`make run`) and committing dvc.lock.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import PurePosixPath

import yaml

ALLOWED = {"deleted", "not in cache"}


def produced_paths(lock: dict) -> set[PurePosixPath]:
    """Every output path recorded in dvc.lock, and every folder above one."""
    paths: set[PurePosixPath] = set()
    for stage in lock.get("stages", {}).values():
        for out in stage.get("outs", []):
            path = PurePosixPath(out["path"])
            paths |= {path, *path.parents}
    return paths


def stale_entries(status: dict, produced: set[PurePosixPath]) -> list[str]:
    """The stages and paths whose recorded state disagrees with the checkout."""
    problems = []
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):  # e.g. "changed command", "always changed"
                problems.append(f"{stage}: {entry}")
                continue
            for kind, changes in entry.items():
                if kind == "changed outs":
                    continue
                if kind == "changed deps":
                    bad = {
                        p: s
                        for p, s in changes.items()
                        if s not in ALLOWED and PurePosixPath(p) not in produced
                    }
                    problems += [f"{stage}: dependency {p} {s}" for p, s in bad.items()]
                else:
                    problems.append(f"{stage}: {kind} {changes}")
    return problems


def main() -> int:
    result = subprocess.run(["dvc", "status", "--json"], capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout, result.stderr, sep="\n", file=sys.stderr)
        return result.returncode
    with open("dvc.lock") as lock_file:
        produced = produced_paths(yaml.safe_load(lock_file))
    problems = stale_entries(json.loads(result.stdout or "{}"), produced)
    if problems:
        print("dvc.lock does not match HEAD:", *problems, sep="\n  ", file=sys.stderr)
        print("Fix: `make run && .venv/bin/dvc commit -f`, then commit dvc.lock.", file=sys.stderr)
        return 1
    print("dvc.lock matches the code and parameters at HEAD (outputs come from the remote).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
