"""No module-level mutable state in the package: caches belong to objects with an owner.

Two control planes in one process (tests run several) must share nothing, and a memo that
lives at module level is shared by all of them. So every module-level value in
``src/meshpilot`` is immutable (constants are tuples, frozensets, read-only mappings,
frozen dataclasses, compiled patterns...), and no function rebinds a module's name with a
``global`` statement.
"""

from __future__ import annotations
import __future__

import ast
import dataclasses
import datetime
import enum
import importlib
import logging
import pkgutil
import re
import types
import typing
from pathlib import Path
from typing import Any

import rich.console
import typer

import meshpilot

SRC = Path(meshpilot.__file__).parent

_IMMUTABLE_SCALARS = (type(None), bool, int, float, complex, str, bytes, range, re.Pattern,
                      datetime.tzinfo, datetime.timedelta, datetime.date, __future__._Feature,
                      enum.Enum)
_CODE = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type,
         types.MethodDescriptorType, types.WrapperDescriptorType, types.ClassMethodDescriptorType,
         types.ModuleType, property, staticmethod, classmethod)
_PROCESS_WIDE = (typer.Typer, rich.console.Console, logging.Logger)
"""Allowed at module level: the command line's declaration (typer builds its app from the
decorators at import), the process's terminal streams, and the logging framework's
loggers: each stands for something there is one of per process."""


def _typing_construct(value: Any) -> bool:
    """Type aliases, type variables and the like: descriptions, not state."""
    if isinstance(value, typing.TypeVar | types.GenericAlias | types.UnionType):
        return True
    module = getattr(type(value), "__module__", "")
    return module in ("typing", "typing_extensions") and not isinstance(
        value, types.MappingProxyType | types.SimpleNamespace)


def _frozen_dataclass(value: Any) -> bool:
    params = getattr(type(value), "__dataclass_params__", None)
    return dataclasses.is_dataclass(value) and params is not None and params.frozen


def mutable_part(value: Any, seen: set[int] | None = None) -> str | None:
    """Why ``value`` is (or holds something) mutable; None when it is immutable."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return None
    seen.add(id(value))
    if isinstance(value, _IMMUTABLE_SCALARS + _CODE + _PROCESS_WIDE):
        return None
    if type(value) is object or _typing_construct(value):
        return None  # a sentinel: it has no state
    if isinstance(value, tuple | frozenset):
        items: Any = value
    elif isinstance(value, types.MappingProxyType):
        items = [*value.keys(), *value.values()]
    elif _frozen_dataclass(value):
        items = [getattr(value, f.name) for f in dataclasses.fields(value)]
    else:
        return f"a {type(value).__qualname__}"
    for item in items:
        why = mutable_part(item, seen)
        if why is not None:
            return f"{why} inside a {type(value).__qualname__}"
    return None


def _modules() -> list[types.ModuleType]:
    names = [m.name for m in pkgutil.walk_packages([str(SRC)], prefix="meshpilot.")]
    return [meshpilot, *(importlib.import_module(n) for n in names if not n.endswith("__main__"))]


def test_every_module_level_value_is_immutable() -> None:
    found = []
    for module in _modules():
        for name, value in vars(module).items():
            if name.startswith("__") and name.endswith("__"):
                continue  # __all__, __version__, the import system's own
            if callable(value) and getattr(value, "__module__", None) != module.__name__:
                continue  # imported code
            why = mutable_part(value)
            if why is not None:
                found.append(f"{module.__name__}.{name}: {why}")
    assert found == [], "module-level mutable state (give it an owner):\n" + "\n".join(found)


def test_no_global_statements() -> None:
    found = [f"{path.relative_to(SRC)}:{node.lineno}"
             for path in sorted(SRC.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text(), str(path)))
             if isinstance(node, ast.Global | ast.Nonlocal) and isinstance(node, ast.Global)]
    assert found == [], "global statements in src/meshpilot: " + ", ".join(found)


def test_the_check_finds_what_it_looks_for() -> None:
    """The checks themselves: a memo at module level, a dict in a tuple, a global."""
    assert mutable_part({}) == "a dict"
    assert mutable_part((1, ("a", [2]))) is not None
    assert mutable_part(types.MappingProxyType({"k": [1]})) is not None
    assert mutable_part(types.MappingProxyType({"k": (1, frozenset({2}))})) is None

    @dataclasses.dataclass(frozen=True)
    class Frozen:
        items: tuple[int, ...]

    assert mutable_part(Frozen((1, 2))) is None
    tree = ast.parse("x = 0\ndef f():\n    global x\n    x = 1\n")
    assert any(isinstance(n, ast.Global) for n in ast.walk(tree))
