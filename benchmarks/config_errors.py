"""Benchmark: how long `kedro run` takes to refuse each configuration mistake of issue 15.

Run: `nice -n 10 .venv/bin/python benchmarks/config_errors.py [--project PATH] [--rounds 3]
[--label after] [--out benchmarks/results/config_errors_cpu_2core.md]`.
The project at `--project` (default: this checkout) is copied (`git archive HEAD`, its `.venv`
linked) into a temporary folder; each mistake is one `kedro run` there, in interleaved rounds
(every mistake once per round, so they meet similar load), after one warm-up run that fills
the bytecode caches. Reported per mistake: the median wall and CPU seconds (user + sys of the
finished child) and the error's first line. Reference rows time the imports every `kedro`
command pays before the project is reached: Kedro's CLI and kedro-mlflow's commands (which
import mlflow). Goal (issue 15): each error within 5 s of starting, on the 2-core machine.
A row is appended to `--out` per mistake; run it on the code before and after a change with
different `--label`s to compare them in one table.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

FOLDER = "data_ingestion.source=imagefolder,data_ingestion.sources.imagefolder.root="
#: label -> (kedro run arguments, `{project}` = the project copy's path;
#: conf/local/parameters_training.yml text or None).
MISTAKES: dict[str, tuple[list[str], str | None]] = {
    "option typo (--params ...promt_size=3)": (
        ["--params", "training.runs.vp.options.promt_size=3"], None
    ),
    "unknown method (--params ...method=vpp)": (
        ["--params", "training.runs.vp.method=vpp"], None
    ),
    "option typo in conf/local (partial override)": (
        [], "training: {runs: {vp: {options: {promt_size: 8}}}}\n"
    ),
    "valid partial override in conf/local, then --namespaces vpx": (
        ["--namespaces", "vpx"], "training: {runs: {vp: {options: {prompt_size: 8}}}}\n"
    ),
    "--pipelines trainng": (["--pipelines", "trainng"], None),
    "--namespaces vpx": (["--namespaces", "vpx"], None),
    # issue 24: unknown keys, YAML syntax, the image folder (before the session)
    "unknown top-level key (--params trainig.seeds=[0])": (
        ["--params", "trainig.seeds=[0]"], None
    ),
    "unknown nested key (--params registry.modl_name=x)": (
        ["--params", "registry.modl_name=x"], None
    ),
    "unknown nested key (--params training.runz.vp.method=vp)": (
        ["--params", "training.runz.vp.method=vp"], None
    ),
    "unknown key in conf/local (trainig:)": ([], "trainig: {seeds: [0]}\n"),
    "YAML syntax error in conf/local": ([], "training:\n  seeds: [0\n  hparams: config\n"),
    "image folder missing": (["--params", FOLDER + "{project}/no_such_folder"], None),
    "image folder with one class": (["--params", FOLDER + "{project}/one_class"], None),
    # issue 23: what only the built model knows (methods built on stand-ins of the backbones)
    "AP layer that does not exist (blocks.99)": (
        ["--params", "training.runs.ap_vit.options.layer=blocks.99"], None
    ),
    "devices=3 with batch_size 64": (["--params", "training_engine.devices=3"], None),
}  # fmt: skip
HEADER = "| code | mistake | wall s | CPU s | lines | load (1/5/15 min) | error |"
#: label -> Python code: the imports Kedro's start-up pays before the project's `run`.
REFERENCES = {
    "import kedro.framework.cli": "import kedro.framework.cli",
    "import kedro_mlflow.framework.cli.cli (mlflow)": "import kedro_mlflow.framework.cli.cli",
}


def copy_project(source: Path, into: Path) -> Path:
    """`git archive HEAD` of `source` unpacked in `into`, with `source`'s .venv linked."""
    archive = subprocess.run(
        ["git", "-C", str(source), "archive", "HEAD"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / ".venv").symlink_to((source / ".venv").resolve())
    return into


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, CPU s, combined output) of one finished child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout + done.stderr


def error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("Error:")]
    return lines[0] if lines else "(no error line)"


def printed_lines(output: str) -> int:
    """Lines the user sees (the paragraph is one line, however long)."""
    return len([line for line in output.splitlines() if line.strip()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--label", default="HEAD")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/config_errors_cpu_2core.md")
    )
    args = parser.parse_args()
    source = args.project.resolve()
    commit = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        project = copy_project(source, Path(tmp))
        env = os.environ | {"PYTHONPATH": str(project / "src"), "KEDRO_DISABLE_TELEMETRY": "true",
                            "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}  # fmt: skip
        kedro = [str(project / ".venv/bin/kedro"), "run"]
        python = str(project / ".venv/bin/python")
        local = project / "conf/local/parameters_training.yml"
        (project / "one_class/cats").mkdir(parents=True)
        timed([*kedro, "--pipelines", "trainng"], project, env)  # warm-up: bytecode caches
        walls: dict[str, list[float]] = {k: [] for k in [*MISTAKES, *REFERENCES]}
        cpus: dict[str, list[float]] = {k: [] for k in walls}
        errors: dict[str, str] = {}
        lines: dict[str, int] = {}
        for _ in range(args.rounds):
            for label, (extra, override) in MISTAKES.items():
                if override is None:
                    local.unlink(missing_ok=True)
                else:
                    local.write_text(override)
                given = [arg.replace("{project}", str(project)) for arg in extra]
                wall, cpu, output = timed([*kedro, *given], project, env)
                walls[label].append(wall)
                cpus[label].append(cpu)
                errors[label] = error_line(output).replace(str(project), "<project>")
                lines[label] = printed_lines(output)
            local.unlink(missing_ok=True)
            for label, code in REFERENCES.items():
                wall, cpu, _ = timed([python, "-c", code], project, env)
                walls[label].append(wall)
                cpus[label].append(cpu)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    table = []
    if not args.out.exists():
        table.append("# `kedro run` refusing a configuration mistake (config_errors.py)\n")
    if not args.out.exists() or HEADER not in args.out.read_text():
        table += [
            f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; medians of "
            f"{args.rounds} interleaved rounds after a warm-up run; CPU = user + sys; lines = "
            "non-empty lines printed.\n",
            HEADER,
            "|---|---|---:|---:|---:|---|---|",
        ]
    for label in walls:
        error = errors.get(label, "(reference: imports only)")
        table.append(
            f"| {args.label} ({commit}) | {label} | {statistics.median(walls[label]):.1f} | "
            f"{statistics.median(cpus[label]):.1f} | {lines.get(label, '')} | {load} | "
            f"{error[:90]} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as out:
        out.write("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
