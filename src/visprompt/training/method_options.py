"""Method names and build options, read from the methods' source without importing them.

Checking a run list when `kedro run` starts needs each method's name (its `@register("name")`)
and its constructor's options with their type hints. Importing `visprompt.methods` for that
loads torch, timm and peft: ~10 s of CPU on 2 cores, most of the time before a typo's error.
The constructors stay the one place options are declared: this module reads their signatures
with `ast` (tests/training/test_method_options.py checks them against `inspect.signature`).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

#: Build arguments that are not configuration (the model, the class count).
NOT_OPTIONS = {"self", "backbone", "num_classes"}
#: Names a type hint of a build option may use (module-level aliases of them too).
_HINT_NAMES: dict[str, Any] = {
    "Any": Any,
    "Literal": Literal,
    "Mapping": Mapping,
    "Sequence": Sequence,
    "bool": bool,
    "dict": dict,
    "float": float,
    "int": int,
    "list": list,
    "str": str,
    "tuple": tuple,
}


class _AnyName(dict):
    """Evaluation namespace: a name that is not a plain type (an unknown class) accepts Any."""

    def __missing__(self, key: str) -> Any:
        return Any


def _hint(node: ast.expr | None, names: Mapping[str, Any]) -> Any:
    """The type hint an annotation's source denotes (Any where it names something else)."""
    if node is None:
        return Any
    code = compile(ast.Expression(node), "<annotation>", "eval")
    try:
        return eval(code, {"__builtins__": {}}, _AnyName(names))  # noqa: S307 (our own source)
    except (AttributeError, TypeError):  # `nn.Module`, `torch.Tensor`: not configuration
        return Any


def _aliases(tree: ast.Module) -> dict[str, Any]:
    """Module-level type aliases (`Granularity = Literal["full", "channel"]`), in order."""
    names = dict(_HINT_NAMES)
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, ast.Subscript | ast.BinOp)
        ):
            names[stmt.targets[0].id] = _hint(stmt.value, names)
    return names


def _registered_name(cls: ast.ClassDef) -> str | None:
    for deco in cls.decorator_list:
        if (
            isinstance(deco, ast.Call)
            and getattr(deco.func, "id", getattr(deco.func, "attr", None)) == "register"
            and deco.args
            and isinstance(deco.args[0], ast.Constant)
        ):
            return str(deco.args[0].value)
    return None


def _options(cls: ast.ClassDef, names: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor's options: name -> hint; tensors (`init_prompts`) and `**options` left out.

    A class without its own `__init__` has `AdaptedModel`'s, which takes no options.
    """
    init = next(
        (f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None
    )
    if init is None:
        return {}
    options: dict[str, Any] = {}
    for arg in (*init.args.posonlyargs, *init.args.args, *init.args.kwonlyargs):
        annotation = ast.unparse(arg.annotation) if arg.annotation is not None else ""
        if arg.arg in NOT_OPTIONS or "Tensor" in annotation:
            continue
        options[arg.arg] = _hint(arg.annotation, names)
    return options


def _methods_folder() -> Path:
    spec = importlib.util.find_spec("visprompt.methods")  # locates it without running it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("visprompt.methods is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def declared_methods() -> dict[str, dict[str, Any]]:
    """Every method the package registers: name -> {option: type hint}, sorted by name."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(_methods_folder().glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        names: dict[str, Any] | None = None
        for cls in tree.body:
            if isinstance(cls, ast.ClassDef) and (name := _registered_name(cls)) is not None:
                names = _aliases(tree) if names is None else names
                found[name] = _options(cls, names)
    return dict(sorted(found.items()))


def available() -> list[str]:
    """Names of every method (as `visprompt.methods.available()`, without importing them)."""
    return list(declared_methods())


def method_options(method: str) -> dict[str, Any]:
    """The build options of `method`: name -> type hint (Any if none), in signature order."""
    return dict(declared_methods()[method])
