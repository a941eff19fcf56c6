"""dvc.yaml: every stage depends on all the package code its `kedro run` command executes.

The code a stage runs is derived, not listed: the modules of the pipeline(s) its command
names, the dataset classes its catalog files name, and everything they import from
`visprompt`, transitively (read with `ast`, no import). Kedro's project wiring (settings,
hooks, pipeline registry) only logs and assembles, so it is not a dependency of outputs.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "visprompt"
#: Executed but without effect on outputs: the version string only.
NOT_RESULT_CODE = {PACKAGE / "__init__.py"}


def _module_file(name: str) -> Path | None:
    """The file of module `name` (a package's __init__.py), or None when not ours."""
    path = SRC.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imports(file: Path) -> set[Path]:
    """Our modules that `file` imports (and its parent packages' __init__ files)."""
    tree = ast.parse(file.read_text(), filename=str(file))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    found: set[Path] = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            module = _module_file(".".join(parts[:i]))
            if module is not None and parts[0] == "visprompt":
                found.add(module)
    if "import_module(" in file.read_text():  # a package loading its own modules by name
        found |= set(file.parent.rglob("*.py"))
    return found


def code_closure(start: set[Path]) -> set[Path]:
    """`start` and every visprompt module it imports, transitively."""
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        file = todo.pop()
        if file not in seen:
            seen.add(file)
            todo += _imports(file) - seen
    return seen - NOT_RESULT_CODE


def _dataset_modules(catalog: Path) -> set[Path]:
    """Modules of the `visprompt.` dataset classes a catalog file names."""
    types = re.findall(r"type:\s*(visprompt\.[\w.]+)", catalog.read_text())
    return {_module_file(t.rsplit(".", 1)[0]) for t in types} - {None}


def _stages() -> dict[str, dict]:
    """dvc.yaml's stages; a `foreach` stage as its template (the same deps for every key)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def stage_code(stage: dict) -> set[Path]:
    """The package modules a stage's command runs."""
    argv = shlex.split(stage["cmd"])
    assert argv[:2] == ["kedro", "run"], f"dvc.yaml: unexpected command {stage['cmd']!r}"
    names = argv[argv.index("--pipelines") + 1].split(",")
    start: set[Path] = set()
    for name in names:
        folder = PACKAGE / "pipelines" / name
        assert folder.is_dir(), f"dvc.yaml: no pipeline folder {folder}"
        start |= set(folder.glob("*.py"))
    for dep in stage.get("deps", []):
        if Path(dep).name.startswith("catalog"):
            start |= _dataset_modules(ROOT / dep)
    return code_closure(start)


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


def test_closure_follows_imports_transitively(tmp_path: Path) -> None:
    nodes = PACKAGE / "pipelines" / "training" / "nodes.py"
    closure = code_closure({nodes})
    assert PACKAGE / "methods" / "vpt" / "model.py" in closure  # nodes -> methods/__init__ -> vpt
    assert PACKAGE / "methods" / "vit_tokens.py" in closure  # ... -> vpt -> vit_tokens
    assert PACKAGE / "data" / "ingest.py" not in closure
