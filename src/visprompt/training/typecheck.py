"""Check a configuration value against a type hint, for errors that say what was expected.

YAML gives strings, numbers, booleans, null, lists and mappings; this checks those against
the hints of `TrainConfig` fields and method build options before anything starts, so a
quoted `lr: "0.01"` fails when the pipeline is created instead of deep inside the optimizer.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def expected(hint: Any) -> str:
    """Words for what `hint` accepts (`an integer or null`, `one of 'full', 'channel'`)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None) or hint is None:
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(expected(a) for a in args)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        return "a list" + (f" of {expected(args[0])}" if args else "")
    if origin in (dict, Mapping) or hint is dict:
        return "a mapping"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def matches(value: Any, hint: Any) -> bool:
    """Whether a YAML-loaded `value` is acceptable for `hint` (unknown hints accept anything)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None) or hint is None:
        return value is None
    if origin is typing.Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:  # a pathlib.Path is fine where the config holds a path
        return isinstance(value, str | os.PathLike)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        element = args[0] if args else Any
        return isinstance(value, list | tuple) and all(matches(v, element) for v in value)
    if origin in (dict, Mapping) or hint is dict:
        return isinstance(value, Mapping)
    return True
