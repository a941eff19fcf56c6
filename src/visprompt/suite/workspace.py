"""One task's workspace: a Kedro project folder of its own, `<suite.workspace>/<task>/`.

It links the project's code (`src`, `pyproject.toml`), configuration files and shipped
weights (`data/01_raw`), and keeps its own `data/` (shards, checkpoints, Optuna study,
reports) and MLflow store (`mlflow/`): tasks never overwrite each other's shards nor race to
create one SQLite store, so several processes (or machines sharing the folder) can each run
other tasks.
Only `parameters_training.yml` and `parameters_tuning.yml` are written here: the project's,
with `training.runs` and `tuning.run_spaces` replaced by the task's. Everything else the task
changes is runtime parameters in `task.yml`, the `kedro run --config` file, so the command
can be rerun by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from visprompt.atomic import atomic_path
from visprompt.data.sources import load_source
from visprompt.suite.config import TASK_PIPELINES, Suite

STATUS_FILE = "status.json"
LOG_FILE = "kedro.log"
RUN_CONFIG = "task.yml"
#: The project's files holding the run lists a task replaces, by section.
REPLACED_FILES = {
    "training": "conf/base/parameters_training.yml",
    "tuning": "conf/base/parameters_tuning.yml",
}
#: Project paths a workspace links to (read-only use). Its `src/` stays empty (Kedro wants
#: it inside the project folder): the runner puts the project's src/ first on PYTHONPATH.
LINKED = ("pyproject.toml", "data/01_raw")


def folder(suite: Suite, task: str, project: Path) -> Path:
    return project / suite.workspace / task


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    link.symlink_to(target.resolve())


def prepare(suite: Suite, task: str, project: Path) -> Path:
    """Create (or refresh) the task's workspace; its folder."""
    spec, where = suite.tasks[task], folder(suite, task, project)
    for name in LINKED:
        if (project / name).exists():
            _link(project / name, where / name)
    conf = project / "conf"
    for item in conf.iterdir():  # environments (gpu, team) and logging.yml as they are
        if item.name not in ("base", "local"):
            _link(item, where / "conf" / item.name)
    for item in (conf / "base").iterdir():
        if f"conf/base/{item.name}" not in REPLACED_FILES.values():
            _link(item, where / "conf/base" / item.name)
    (where / "conf/local").mkdir(parents=True, exist_ok=True)
    (where / "src").mkdir(exist_ok=True)
    for (section, key), value in spec.replaced(suite.raw["tuning"]).items():
        file = REPLACED_FILES[section]
        content = yaml.safe_load((project / file).read_text())
        content[section][key] = value
        if (where / file).is_symlink():  # never write through a link into the project
            (where / file).unlink()
        (where / file).write_text(
            f"# Written by visprompt.suite for task {task}: the project's {file} with the "
            f"suite's {section}.{key}.\n" + yaml.safe_dump(content, sort_keys=False)
        )
    (where / "mlflow").mkdir(exist_ok=True)  # its own store: parallel tasks never race on one
    run: dict[str, Any] = {"params": suite.task_parameters(task)}
    if suite.env:
        run["env"] = suite.env
    (where / RUN_CONFIG).write_text(yaml.safe_dump({"run": run}, sort_keys=False))
    return where


def command(suite: Suite) -> list[str]:
    """The `kedro run` a workspace executes (in its folder)."""
    kedro = str(Path(sys.executable).parent / "kedro")
    return [kedro, "run", "--config", RUN_CONFIG, "--pipelines", ",".join(TASK_PIPELINES)]


def missing_data(suite: Suite, task: str) -> str | None:
    """Why the task's data cannot load, with how to install it; None when it loads."""
    spec = suite.tasks[task]
    try:
        load_source(spec.source, spec.options)
    except (FileNotFoundError, ImportError) as error:
        fix = f" Install: {spec.install}" if spec.install else ""
        return f"{error}{fix}"
    return None


def write_status(where: Path, status: dict[str, Any]) -> None:
    with atomic_path(where / STATUS_FILE) as tmp:
        tmp.write_text(json.dumps(status, indent=1))


def read_status(where: Path) -> dict[str, Any] | None:
    path = where / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def run_task(suite: Suite, task: str, project: Path) -> dict[str, Any]:
    """Run one task in its workspace (data, backbones, inits, tuning, seeds, test metrics);
    its status: `done`, `failed` (the log's tail) or `missing data` (the install line). A
    finished seed, backbone, init or tuning trial is reused through its run identity."""
    where = folder(suite, task, project)
    where.mkdir(parents=True, exist_ok=True)
    status: dict[str, Any] = {"task": task, "command": " ".join(command(suite)[1:])}
    if not suite.tasks[task].runs:
        status |= {"status": "not run", "detail": "none of its runs selected", "wall_s": 0.0}
        write_status(where, status)
        return status
    missing = missing_data(suite, task)
    if missing is not None:
        status |= {"status": "missing data", "detail": missing, "wall_s": 0.0}
        write_status(where, status)
        return status
    prepare(suite, task, project)
    path = os.pathsep.join(filter(None, [str(project / "src"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "KEDRO_DISABLE_TELEMETRY": "true"}
    start = time.monotonic()
    with (where / LOG_FILE).open("w") as log:
        result = subprocess.run(
            command(suite), cwd=where, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    wall = round(time.monotonic() - start, 1)
    if result.returncode == 0:
        status |= {"status": "done", "detail": "", "wall_s": wall}
    else:
        tail = (where / LOG_FILE).read_text().splitlines()[-15:]
        status |= {"status": "failed", "detail": "\n".join(tail), "wall_s": wall}
    write_status(where, status)
    return status
