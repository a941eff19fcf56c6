"""The package code a computation executes, derived from its imports, and its digest.

A checkpoint or cached result is only valid for the code that produced it: editing a
method's forward pass, the loop, the shard reader or the preprocessing must retrain. The
files are not listed by hand (a list forgets the next module): they are the `visprompt`
modules a start module imports, transitively, found by `modulefinder` scanning the compiled
bytecode. A package that loads modules by name (`importlib.import_module`: the methods'
registry, `training`'s lazy attributes) brings every module below it. The same derivation
gives dvc.yaml's code deps (tests/test_dvc_code_deps.py checks they agree).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator
from modulefinder import ModuleFinder
from pathlib import Path
from types import CodeType

PACKAGE = "visprompt"
#: The folder holding the `visprompt` package (src/).
SOURCE_ROOT = Path(__file__).resolve().parents[2]
#: What a training run executes: the run service and everything it imports.
RUN_MODULES = ("visprompt.training.service",)
#: The package's __init__.py holds the version string only: no result depends on it.
_NOT_RESULT_CODE = f"{PACKAGE}/__init__.py"


def _names(code: CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _names(const)


def _module_name(file: Path, root: Path) -> str:
    parts = file.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def code_files(modules: Iterable[str] = RUN_MODULES, root: Path = SOURCE_ROOT) -> list[Path]:
    """The `visprompt` files `modules` execute (themselves included), sorted by path.

    `root` is the folder holding the package (a copy of it in tests); only it is searched,
    so third-party imports are skipped unread.
    """
    finder = ModuleFinder(path=[str(root)])
    todo, done = list(modules), set()
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        finder.import_hook(name)
        for module in list(finder.modules.values()):
            code, file = module.__code__, module.__file__
            if not (file or "").endswith("__init__.py") or "import_module" not in _names(code):
                continue
            todo += [_module_name(f, root) for f in Path(file).parent.rglob("*.py")]
    files = {
        Path(m.__file__)
        for n, m in finder.modules.items()
        if m.__file__ and (n == PACKAGE or n.startswith(f"{PACKAGE}."))
    }
    files.discard(root / _NOT_RESULT_CODE)
    return sorted(files, key=lambda f: f.relative_to(root).as_posix())


@functools.cache
def code_digest(modules: tuple[str, ...] = RUN_MODULES, root: Path = SOURCE_ROOT) -> str:
    """sha256 over (relative path, bytes) of `code_files`; computed once per process.

    The path is hashed too, so moving code between files changes the digest.
    """
    digest = hashlib.sha256()
    for file in code_files(modules, root):
        name = file.relative_to(root).as_posix().encode()
        data = file.read_bytes()
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()
