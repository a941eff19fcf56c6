"""Fail when the committed dvc.lock does not match the code and parameters at HEAD.

In a clean clone every stage output is missing (it lives in the DVC remote), so `dvc status`
may report outputs, and dependencies produced by other stages, as deleted or not in cache.
Anything else (a code or config dependency modified or new, changed parameters, a changed
command, a stage missing from the lock) means someone changed the pipeline without running
`dvc repro` (or `dvc commit` after `make run`) and committing dvc.lock.
"""

from __future__ import annotations

import json
import subprocess
import sys

ALLOWED = {"deleted", "not in cache"}


def stale_entries(status: dict) -> list[str]:
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
                    bad = {p: s for p, s in changes.items() if s not in ALLOWED}
                    problems += [f"{stage}: dependency {p} {s}" for p, s in bad.items()]
                else:
                    problems.append(f"{stage}: {kind} {changes}")
    return problems


def main() -> int:
    result = subprocess.run(["dvc", "status", "--json"], capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout, result.stderr, sep="\n", file=sys.stderr)
        return result.returncode
    problems = stale_entries(json.loads(result.stdout or "{}"))
    if problems:
        print("dvc.lock does not match HEAD:", *problems, sep="\n  ", file=sys.stderr)
        print("Fix: `make run && .venv/bin/dvc commit -f`, then commit dvc.lock.", file=sys.stderr)
        return 1
    print("dvc.lock matches the code and parameters at HEAD (outputs come from the remote).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
