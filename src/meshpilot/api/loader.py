"""Load multi-document YAML or JSON and remember where every field came from.

Validation errors must name the file and line of the offending field, so the loader
keeps, for each document, a map from field path (``("spec", "http", 0, "route")``) to
the line and column where that field starts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshpilot.api.yaml_bounds import (
    BoundedLoader,
    LoneSurrogate,
    NestingTooDeep,
    NodeBudget,
    TooManyNodes,
)

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class LoadedDocument:
    """One document from a file, with its source positions."""

    data: Any
    file: str
    index: int  # 0-based position of the document in its file
    line: int  # line where the document starts
    positions: dict[FieldPath, Position] = field(default_factory=dict)

    def position_of(self, path: Iterable[str | int]) -> Position:
        """The position of the deepest known field along ``path``.

        Falls back to the parent when the field itself is absent (a missing required
        field is reported where its parent object starts).
        """
        parts = tuple(path)
        while parts:
            if parts in self.positions:
                return self.positions[parts]
            parts = parts[:-1]
        return self.positions.get((), Position(self.line, 1))


class LoadError(Exception):
    """A file that does not parse. Carries file, line and column."""

    def __init__(self, file: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{file}:{line}:{column}: {message}")
        self.file = file
        self.line = line
        self.column = column
        self.message = message


class InputTooLarge(LoadError):
    """A file over one of the loader's limits (``limit``: "depth" or "nodes")."""

    def __init__(self, file: str, line: int, column: int, message: str, limit: str) -> None:
        super().__init__(file, line, column, message)
        self.limit = limit


class _Loader(BoundedLoader):
    """Bounded SafeLoader that keeps timestamps as strings (labels, not dates, to us)."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _walk(node: yaml.Node, path: FieldPath, out: dict[FieldPath, Position], file: str) -> None:
    mark = node.start_mark
    out.setdefault(path, Position(mark.line + 1, mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise LoadError(
                    file,
                    line,
                    key_node.start_mark.column + 1,
                    f"duplicate key {key!r} (first at line {seen[key]})",
                )
            seen[key] = line
            child = (*path, key)
            out[child] = Position(line, key_node.start_mark.column + 1)
            _walk(value_node, child, out, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), out, file)


def _json_error(file: str, text: str) -> None:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoadError(file, exc.lineno, exc.colno, f"invalid JSON: {exc.msg}") from None
    except RecursionError:
        pass  # too deep: the YAML composer refuses it, at the level where it goes too deep


def _position(exc: yaml.MarkedYAMLError) -> tuple[int, int]:
    mark = exc.problem_mark or exc.context_mark
    return (mark.line + 1, mark.column + 1) if mark else (1, 1)


def load_text(
    text: str, file: str = "<stdin>", budget: NodeBudget | None = None
) -> list[LoadedDocument]:
    """Parse every document in ``text``; empty documents are skipped.

    A JSON file (by name, or text starting with ``{``/``[``) is checked by the JSON
    parser first, so its errors read as JSON errors; a top-level JSON list or a
    Kubernetes ``List`` kind is expanded into its items. ``budget``: the nodes the
    caller's whole apply may still hold (see :mod:`meshpilot.api.yaml_bounds`).
    """
    stripped = text.lstrip()
    if file.endswith(".json") or stripped.startswith(("{", "[")):
        _json_error(file, text)
    try:
        # refuses non-printable characters up front
        loader = _Loader(text, budget if budget is not None else NodeBudget())
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - before.rfind("\n")
        raise LoadError(
            file, line, column, f"invalid YAML: character #x{exc.character:04x}: {exc.reason}"
        ) from None
    docs: list[LoadedDocument] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            positions: dict[FieldPath, Position] = {}
            _walk(node, (), positions, file)
            data = loader.construct_document(node)
            start = node.start_mark.line + 1
            if data is None:
                index += 1
                continue
            docs.extend(_expand(data, file, index, start, positions))
            index += 1
    except (NestingTooDeep, TooManyNodes) as exc:
        limit = "depth" if isinstance(exc, NestingTooDeep) else "nodes"
        raise InputTooLarge(file, *_position(exc), str(exc.problem), limit) from None
    except LoneSurrogate as exc:
        raise LoadError(file, *_position(exc), f"invalid text: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or exc.context or "invalid YAML"
        raise LoadError(file, *_position(exc), f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise LoadError(file, 1, 1, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return docs


def _expand(
    data: Any, file: str, index: int, start: int, positions: dict[FieldPath, Position]
) -> list[LoadedDocument]:
    """Split a JSON array or a ``kind: List`` into one document per item."""
    if isinstance(data, list):
        items, prefix = data, ()
    elif isinstance(data, dict) and data.get("kind") == "List" and isinstance(
        data.get("items"), list
    ):
        items, prefix = data["items"], ("items",)
    else:
        return [LoadedDocument(data, file, index, start, positions)]
    # one pass over the positions, not one per item: a list of n items is O(n)
    depth = len(prefix)
    per_item: dict[int, dict[FieldPath, Position]] = {}
    for path, pos in positions.items():
        if len(path) > depth and path[:depth] == prefix and isinstance(path[depth], int):
            per_item.setdefault(path[depth], {})[path[depth + 1 :]] = pos
    out = []
    for i, item in enumerate(items):
        sub = per_item.get(i, {})
        line = sub.get((), Position(start, 1)).line
        out.append(LoadedDocument(item, file, index, line, sub))
    return out


YAML_SUFFIXES = (".yaml", ".yml", ".json")


def expand_paths(paths: Iterable[str]) -> list[Path | None]:
    """Files named directly, and the YAML/JSON files of directories (recursively, sorted).

    ``-`` stands for standard input and is returned as ``None``.
    """
    out: list[Path | None] = []
    for name in paths:
        if name == "-":
            out.append(None)
            continue
        path = Path(name)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES))
        elif path.exists():
            out.append(path)
        else:
            raise FileNotFoundError(f"{name}: no such file or directory")
    return out


def read_sources(paths: Iterable[str]) -> list[tuple[str, str]]:
    """(file name, text) for every file behind ``paths``; ``-`` reads standard input."""
    sources = []
    for path in expand_paths(paths):
        if path is None:
            sources.append(("<stdin>", sys.stdin.read()))
        else:
            sources.append((str(path), path.read_text(encoding="utf-8")))
    return sources
