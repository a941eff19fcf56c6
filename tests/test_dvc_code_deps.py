"""dvc.yaml: every stage depends on all the package code its `kedro run` command executes.

The code a stage runs is derived by the library (`training.code_digest.code_files`, the same
derivation that keys a run's results): the modules of the pipeline(s) its command names, the
dataset classes its catalog files name, and everything they import from `visprompt`,
transitively. Kedro's project wiring (settings, hooks, pipeline registry) only logs and
assembles, so it is not a dependency of outputs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from visprompt.training.code_digest import RUN_MODULES, SOURCE_ROOT, code_files

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "visprompt"


def _module(file: Path) -> str:
    """The dotted name of a package file."""
    parts = file.relative_to(SOURCE_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _dataset_modules(catalog: Path) -> set[str]:
    """Modules of the `visprompt.` dataset classes a catalog file names."""
    types = re.findall(r"type:\s*(visprompt\.[\w.]+)", catalog.read_text())
    return {t.rsplit(".", 1)[0] for t in types}


def _stages() -> dict[str, dict]:
    """dvc.yaml's stages; a `foreach` stage as its template (the same deps for every key)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def stage_code(stage: dict) -> set[Path]:
    """The package modules a stage's command runs."""
    argv = shlex.split(stage["cmd"])
    assert argv[:2] == ["kedro", "run"], f"dvc.yaml: unexpected command {stage['cmd']!r}"
    names = argv[argv.index("--pipelines") + 1].split(",")
    start: set[str] = set()
    for name in names:
        folder = PACKAGE / "pipelines" / name
        assert folder.is_dir(), f"dvc.yaml: no pipeline folder {folder}"
        start |= {_module(f) for f in folder.glob("*.py")}
    for dep in stage.get("deps", []):
        if Path(dep).name.startswith("catalog"):
            start |= _dataset_modules(ROOT / dep)
    return set(code_files(sorted(start)))


def _covered(file: Path, deps: list[str]) -> bool:
    return any(file == ROOT / d or (ROOT / d) in file.parents for d in deps)


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_depends_on_all_the_code_it_runs(name: str) -> None:
    stage = _stages()[name]
    deps = [str(d) for d in stage.get("deps", [])]
    missing = sorted(
        f.relative_to(ROOT).as_posix() for f in stage_code(stage) if not _covered(f, deps)
    )
    assert not missing, f"dvc.yaml stage '{name}': add these to its deps: {missing}"
    code = stage_code(stage)
    unneeded = [d for d in deps if d.startswith("src/") and not any(_covered(f, [d]) for f in code)]
    assert not unneeded, f"dvc.yaml stage '{name}': no code it runs is in {unneeded}"
    for dep in deps:
        assert (ROOT / dep).exists() or dep.startswith("data/"), f"{name}: no such dep {dep}"


def test_training_stages_depend_on_method_files() -> None:
    """Editing a method makes every train@/evaluate@ stage out of date (DVC hashes deps)."""
    for name in ("train", "evaluate"):
        deps = [str(d) for d in _stages()[name]["deps"]]
        for module in (
            "methods/vp/model.py",
            "methods/base.py",
            "backbones.py",
            "data/transforms.py",
        ):
            assert _covered(PACKAGE / module, deps), f"{name} does not depend on {module}"


def test_closure_follows_imports_transitively() -> None:
    closure = set(code_files(["visprompt.pipelines.training.nodes"]))
    assert PACKAGE / "methods" / "vpt" / "model.py" in closure  # nodes -> methods/__init__ -> vpt
    assert PACKAGE / "methods" / "vit_tokens.py" in closure  # ... -> vpt -> vit_tokens
    assert PACKAGE / "data" / "ingest.py" not in closure


def test_the_train_stage_covers_the_code_that_keys_a_run() -> None:
    """The run key's code digest and the train stage's deps come from one derivation."""
    deps = [str(d) for d in _stages()["train"]["deps"]]
    for file in code_files(RUN_MODULES):
        assert _covered(file, deps), f"dvc.yaml train: {file} decides results, not a dep"
