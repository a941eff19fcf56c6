"""Crash-consistency harness: SIGKILL `kedro run` at seeded points, rerun it, and check that
the final state equals an uninterrupted run's.

The project is a tiny copy (tests/e2e's: synthetic 4-class data, a 2-block ViT pretrained for
one epoch) whose experiment covers every phase of the default chain plus tuning: ingestion,
validation, backbone, prompt init (an SPT run), tuning (2 trials per run, whose best values
train), training, evaluation, profiling, registration and claims. A point is (node, delay):
the run is killed `delay` seconds after that node's console line appears. Points run in
chains: a fresh project is killed at each point of its chain in turn (every rerun resumes
what the killed one left), then rerun to the end. A final state is:
comparison_seeds.csv without timing columns, tuned_hparams.json, the registered model's
versions (none `pending`) and its one champion, no MLflow run RUNNING, and the files under
data/ (the same paths as the reference: nothing half-written or orphaned).

    python tests/chaos/chaos.py --points 20 --seed 0 --chain 4 --out table.md

`make chaos` runs this; tests/chaos/test_chaos.py runs two points.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS / "e2e"), str(TESTS)]

from e2e_kit import VENV_BIN, make_tiny  # noqa: E402


def _e2e_conftest() -> Any:
    """tests/e2e/conftest.py (its project copy), loaded by path: `conftest` is ambiguous."""
    spec = importlib.util.spec_from_file_location("e2e_conftest", TESTS / "e2e/conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


#: The chaos experiment: a linear probe and an SPT-initialised VPT (prompt init), one seed,
#: one epoch; both tuned (2 trials each) and trained with the tuned values.
TRAINING = {
    "training": {
        "checkpoint_root": "data/06_models/checkpoints",
        "hparams": "tuned",
        "seeds": [0],
        "defaults": {"epochs": 1, "batch_size": 32, "lr": 0.01, "progress": False},
        "runs": {
            "lp": {"method": "linear_probe", "backbone": "vit"},
            "spt": {
                "method": "vpt",
                "backbone": "vit",
                "options": {"num_prompts": 2, "init": "spt"},
                "prompt_init": "spt_random",
            },
        },
    },
    "training_engine": {"accelerator": "cpu", "devices": 1},
}
OVERRIDES = {
    "conf/base/parameters_tuning.yml": {
        "tuning": {
            "trials": 2,
            "epochs": 1,
            "heartbeat_s": 1,
            "grace_s": 3,
            "run_spaces": None,
            "spaces": {
                "linear_probe": {"lr": {"low": 1e-3, "high": 0.1, "log": True}},
                "vpt": {"lr": {"low": 1e-3, "high": 0.1, "log": True}},
            },
        }
    },  # fmt: skip
    "conf/base/parameters_profiling.yml": {
        "profiling": {
            "infer_batch_size": 8,
            "warmup": 1,
            "repeats": 2,
            "latency_repeats": 3,
            "data_wait_batches": 1,
        },
    },  # fmt: skip
    "conf/base/parameters_prompt_init.yml": {"prompt_init": {"max_images": 32}},
}
PIPELINES = "__default__,tuning"
#: Columns of comparison_seeds.csv that measure time, not results.
TIMING = re.compile(r"time|_ms$|_s$|per_s|throughput|latency|mem")
#: Names a finished run must not leave under data/ or mlflow/.
STRAY = re.compile(r"\.tmp$|\.partial$|\.staging$|^tmp|^\.work$|-journal$")
#: The time in the names of Great Expectations' data docs pages (one set per validation).
STAMP = re.compile(r"\d{8}T\d{6}\.\d+Z")
#: A node's console line: `<time> INFO [k/N] <node> ...`.
NODE_LINE = re.compile(r"INFO +\[\d+/\d+\] (\S+)")
PHASES = (
    ("ingestion", re.compile(r"ingest")),
    ("validation", re.compile(r"valid")),
    ("backbone", re.compile(r"backbone|pretrain|materialise")),
    ("prompt init", re.compile(r"prompt_init|init_prompts|build_init")),
    ("tuning", re.compile(r"^tune")),
    ("training", re.compile(r"\.train$|train_")),
    ("evaluation", re.compile(r"evaluat|compar|signific|plot|predict|dvc_files|efficiency")),
    ("profiling", re.compile(r"profil")),
    ("registration", re.compile(r"regist|promot|champion")),
    ("claims", re.compile(r"claim")),
)


def phase(node: str | None) -> str:
    """The phase a node belongs to (by its name), 'start' before the first node."""
    if node is None:
        return "start"
    for name, pattern in PHASES:
        if pattern.search(node):
            return name
    return "other"


def make_project(root: Path) -> Path:
    """The tiny chaos project under `root` (data/ and mlflow/ empty)."""
    root.mkdir(parents=True, exist_ok=True)
    project = _e2e_conftest().make_project_copy(root)
    make_tiny(project, TRAINING)
    for relative, updates in OVERRIDES.items():
        project.update_yaml(relative, updates)
    (root / "env.json").write_text(json.dumps(project.env))
    return project.path


@dataclass
class Run:
    returncode: int
    seconds: float
    nodes: list[tuple[float, str]] = field(default_factory=list)  # (elapsed s, node) ends
    killed: bool = False
    killed_after: str | None = None  # the last node that ended before the kill


def kedro_run(project: Path, log: Path, kill: tuple[str | None, float] | None = None) -> Run:
    """`kedro run --pipelines __default__,tuning` in `project`; with `kill=(node, delay)`,
    SIGKILL its process group `delay` s after `node`'s line (a node's line is printed when it
    ends: the kill lands in the next node) or, for node None, after the start."""
    env = json.loads((project.parent / "env.json").read_text())
    command = [str(VENV_BIN / "kedro"), "run", "--pipelines", PIPELINES]
    started = time.monotonic()
    run = Run(returncode=0, seconds=0.0)
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        timer: threading.Timer | None = None

        def arm() -> None:
            nonlocal timer
            timer = threading.Timer(kill[1], die)
            timer.start()

        def die() -> None:
            run.killed_after = run.nodes[-1][1] if run.nodes else None
            run.killed = True
            os.killpg(process.pid, signal.SIGKILL)

        if kill and kill[0] is None:
            arm()
        for line in process.stdout:
            out.write(line)
            match = NODE_LINE.search(line)
            if match:
                run.nodes.append((time.monotonic() - started, match.group(1)))
                if kill and timer is None and match.group(1) == kill[0]:
                    arm()
        process.wait()
        if timer is not None:
            timer.cancel()
    run.returncode, run.seconds = process.returncode, time.monotonic() - started
    return run


def final_state(project: Path) -> dict[str, Any]:
    """What must equal the reference run's (see the module docstring)."""
    data = project / "data"
    seeds = pd.read_csv(next(data.glob("08_reporting/*/comparison_seeds.csv")))
    seeds = seeds[[c for c in seeds.columns if not TIMING.search(c)]]
    with closing(sqlite3.connect(project / "mlflow/mlflow.db")) as db:
        running = db.execute("SELECT name FROM runs WHERE status = 'RUNNING'").fetchall()
        champions = db.execute(
            "SELECT name, version FROM registered_model_aliases WHERE alias = 'champion'"
        ).fetchall()
        versions = db.execute(
            "SELECT v.name, v.version, t.value FROM model_versions v LEFT JOIN "
            "model_version_tags t ON t.name = v.name AND t.version = v.version "
            "AND t.key = 'validation_status'"
        ).fetchall()
    files = sorted(
        STAMP.sub("<time>", p.relative_to(project).as_posix())
        for p in data.rglob("*")
        if p.is_file()
    )
    stray = sorted(
        p.relative_to(project).as_posix()
        for folder in (data, project / "mlflow")
        for p in folder.rglob("*")
        if STRAY.search(p.name)
    )
    return {
        "seeds": seeds.to_csv(index=False),
        # the best values; not Optuna's trial number (a retried trial has a new one)
        "tuned": {
            run: {k: v for k, v in entry.items() if k != "trial"}
            for run, entry in json.loads(
                (data / "05_model_input/tuned_hparams.json").read_text()
            ).items()
        },
        "running": [r[0] for r in running],
        "champions": champions,
        "versions": sorted(versions),
        "files": files,
        "stray": stray,
    }


def differences(reference: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """What differs from the reference, and what no final state may hold."""
    found = []
    if state["seeds"] != reference["seeds"]:
        found.append("comparison_seeds.csv differs")
    if state["tuned"] != reference["tuned"]:
        found.append("tuned_hparams.json differs")
    if state["running"]:
        found.append(f"MLflow runs left RUNNING: {state['running']}")
    if len(state["champions"]) != 1 or state["champions"] != reference["champions"]:
        found.append(f"champion {state['champions']} (reference {reference['champions']})")
    pending = [v for v in state["versions"] if v[2] != "passed"]
    if pending:
        found.append(f"versions not passed: {pending}")
    if state["versions"] != reference["versions"]:
        found.append(f"versions {state['versions']} (reference {reference['versions']})")
    extra = sorted(set(state["files"]) - set(reference["files"]))
    missing = sorted(set(reference["files"]) - set(state["files"]))
    if extra or missing:
        found.append(f"files under data/: extra {extra[:5]}, missing {missing[:5]}")
    if state["stray"]:
        found.append(f"half-written or orphaned: {state['stray'][:5]}")
    return found


def running_after(reference: Run, node: str | None) -> str:
    """The node that runs after `node` ended (after the start for None), by the reference."""
    names = [None] + [n for _, n in reference.nodes]
    return names[names.index(node) + 1] if names.index(node) + 1 < len(names) else "(end)"


def choose_points(
    reference: Run, count: int, seed: int, phases: Sequence[str] | None = None
) -> list[tuple[str | None, float]]:
    """`count` seeded (node, delay) points spread over the phases: phases take turns, each
    point a random node of the phase and a random moment of it (by the reference's timing).
    The kill is timed from the line of the node before it (from the start for the first)."""
    rng = random.Random(seed)
    spans: dict[str, list[tuple[str | None, float]]] = {}
    previous: list[tuple[float, str | None]] = [(0.0, None), *reference.nodes]
    for (start, before), (end, node) in zip(previous, reference.nodes, strict=False):
        spans.setdefault(phase(node), []).append((before, max(end - start, 0.3)))
    order = [name for name, _ in PHASES if name in spans and name in (phases or spans)]
    points = []
    for k in range(count):
        before, span = rng.choice(spans[order[k % len(order)]])
        points.append((before, round(rng.uniform(0.0, span), 2)))
    return points


def run_chaos(
    workdir: Path,
    count: int,
    seed: int,
    chain: int,
    report: Path | None = None,
    phases: Sequence[str] | None = None,
) -> list[dict]:
    """The reference run, then the points in chains of `chain`: a fresh project, a run killed
    at each point of the chain in turn (each rerun resumes what the killed one left), one
    rerun to the end, its final state compared with the reference's."""
    template = workdir / "template"
    make_project(template)
    started = time.monotonic()
    reference_dir = workdir / "reference"
    shutil.copytree(template, reference_dir, symlinks=True)
    reference = kedro_run(reference_dir / "project", workdir / "reference.log")
    if reference.returncode != 0:
        raise SystemExit(f"the reference run failed: {workdir / 'reference.log'}")
    expected = final_state(reference_dir / "project")
    print(f"reference run: {reference.seconds:.0f} s, {len(reference.nodes)} nodes", flush=True)
    points = choose_points(reference, count, seed, phases)
    order = {node: k for k, (_, node) in enumerate([(0.0, None), *reference.nodes])}
    rows = []
    for first in range(0, len(points), chain):
        case = workdir / f"chain_{first // chain:02d}"
        shutil.copytree(template, case, symlinks=True)
        project = case / "project"
        links = sorted(points[first : first + chain], key=lambda p: (order[p[0]], p[1]))
        kills = []
        for k, (node, delay) in enumerate(links):
            killed = kedro_run(project, case / f"killed_{k}.log", (node, delay))
            kills.append((first + k, node, delay, killed))
        rerun = kedro_run(project, case / "rerun.log")
        found = ["rerun failed"] if rerun.returncode != 0 else []
        if not found:
            found = differences(expected, final_state(project))
        outcome = "same" if not found else "; ".join(found)
        for k, node, delay, killed in kills:
            rows.append(
                {
                    "point": k,
                    "chain": first // chain,
                    "kill": f"{node or 'start'} +{delay:.2f} s",
                    "killed in": _killed_in(reference, killed),
                    "at s": round(killed.seconds, 1),
                    "final rerun s": round(rerun.seconds, 1),
                    "final state": outcome,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        if found:
            print(f"  logs: {case}", flush=True)
        else:
            shutil.rmtree(case)
    if report is not None:
        total = time.monotonic() - started
        write_report(report, rows, count, seed, chain, total, reference.seconds)
    return rows


def _killed_in(reference: Run, killed: Run) -> str:
    if not killed.killed:
        return f"run ended first (exit {killed.returncode})"
    node = running_after(reference, killed.killed_after)
    return f"{phase(node)} ({node})"


def write_report(
    path: Path,
    rows: Sequence[dict],
    count: int,
    seed: int,
    chain: int,
    total: float,
    ref_s: float,
) -> None:
    """The table of points and outcomes with the command, machine and wall time."""
    table = pd.DataFrame(rows).to_markdown(index=False)
    same = sum(r["final state"] == "same" for r in rows)
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")), platform.processor(),
    )  # fmt: skip
    path.write_text(
        f"# Chaos run: {same} of {len(rows)} kill points end in the reference state\n\n"
        f"Command: `OMP_NUM_THREADS=1 nice -n 5 python tests/chaos/chaos.py --points {count} "
        f"--seed {seed} --chain {chain}` (`make chaos`), on {cpu} ({os.cpu_count()} cores, "
        "shared), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Wall time {total / 60:.1f} min "
        f"(the uninterrupted reference run: {ref_s:.0f} s).\n\n{table}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chain", type=int, default=5, help="kills before each full rerun")
    parser.add_argument("--phases", nargs="*", help="only points in these phases")
    parser.add_argument("--out", type=Path, default=None, help="markdown table to write")
    parser.add_argument("--keep", type=Path, default=None, help="work folder (kept)")
    args = parser.parse_args(argv)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="chaos_"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = run_chaos(workdir, args.points, args.seed, args.chain, args.out, args.phases)
    bad = [r for r in rows if r["final state"] != "same"]
    print(f"{len(rows) - len(bad)} of {len(rows)} points end in the reference state")
    if not bad and args.keep is None:
        shutil.rmtree(workdir)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
