"""`python -m visprompt.suite`: run a suite's tasks (each one `kedro run` in its workspace),
then its report (`kedro run --config <recipe>`: the Kedro `suite` pipeline).

    python -m visprompt.suite                                  # pipelines/suite.yml, every task
    python -m visprompt.suite --tasks digits,mnist5k --no-report   # a share, in one process
    python -m visprompt.suite --report-only                    # gather what has finished

A rerun reuses every finished seed, backbone, init and tuning trial (their run identity),
so an interrupted suite continues where it stopped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from visprompt.suite import config, workspace
from visprompt.training.runs import ConfigError


def _selected(suite: config.Suite, tasks: str | None) -> list[str]:
    if tasks is None:
        return list(suite.tasks)
    chosen = [t for t in tasks.replace(",", " ").split() if t]
    unknown = [t for t in chosen if t not in suite.tasks]
    if unknown:
        raise ConfigError(f"--tasks names {unknown}; the suite's tasks: {', '.join(suite.tasks)}")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m visprompt.suite", description=__doc__)
    parser.add_argument("--recipe", type=Path, default=Path("pipelines/suite.yml"))
    parser.add_argument("--tasks", help="comma-separated tasks (default: every task)")
    parser.add_argument("--runs", help="comma-separated runs (default: every run)")
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="project folder")
    parser.add_argument("--no-report", action="store_true", help="run tasks only")
    parser.add_argument("--report-only", action="store_true", help="gather finished tasks")
    args = parser.parse_args(argv)
    project = args.project.resolve()
    try:
        suite = config.load_recipe(project / args.recipe)
        tasks = [] if args.report_only else _selected(suite, args.tasks)
        if args.runs:
            suite = suite.only([r for r in args.runs.replace(",", " ").split() if r])
    except ConfigError as error:
        print(f"suite: error: {error}", file=sys.stderr)
        return 2
    failed = 0
    start = time.monotonic()
    for number, task in enumerate(tasks, 1):
        where = workspace.folder(suite, task, project)
        print(f"suite {suite.name}: task {number}/{len(tasks)} {task} (log: {where}/kedro.log)")
        status = workspace.run_task(suite, task, project)
        failed += status["status"] == "failed"
        print(f"suite {suite.name}: {task}: {status['status']} in {status['wall_s']:.0f} s")
        if status["detail"]:
            print(status["detail"], file=sys.stderr)
    if tasks:
        print(f"suite {suite.name}: {len(tasks)} task(s) in {time.monotonic() - start:.0f} s")
    if not args.no_report:
        kedro = Path(sys.executable).parent / "kedro"
        report = subprocess.run([str(kedro), "run", "--config", str(args.recipe)], cwd=project)
        failed += report.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
