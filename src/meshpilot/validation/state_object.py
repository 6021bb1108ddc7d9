"""The objects cross-object checks judge, and where their findings are collected.

An object of the state after a change is either stored (no source) or part of the
change (its document kept, so a finding names file, line and column).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshpilot.api.identity import ObjectKey
from meshpilot.api.loader import LoadedDocument
from meshpilot.validation.codes import Code
from meshpilot.validation.diagnostics import Diagnostic, format_path
from meshpilot.validation.finding import Path


@dataclass
class StateObject:
    """An object of the resulting state; ``source`` is set when it is part of the change."""

    key: ObjectKey
    body: dict[str, Any]
    source: LoadedDocument | None = None
    changed: bool = False
    # For a changed object: the creationTimestamp the store keeps for it (that of the
    # stored version it replaces; None when it is new). What the document says is
    # ignored, as the store ignores it.
    created: str | None = None

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.body.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def creation_timestamp(self) -> str | None:
        """When the store created the object; None for one this change creates (it will
        be the newest)."""
        if self.changed:
            return self.created
        meta = self.body.get("metadata")
        stamp = meta.get("creationTimestamp") if isinstance(meta, dict) else None
        return stamp if isinstance(stamp, str) else None


class Findings:
    """Diagnostics about objects of the state, located in their documents when known."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def add(self, code: Code, obj: StateObject, path: Path, message: str) -> None:
        where: dict[str, Any] = {"path": format_path(path), "object": str(obj.key)}
        if obj.source is not None:
            pos = obj.source.position_of(path)
            where.update(file=obj.source.file, line=pos.line, column=pos.column)
        self.items.append(Diagnostic.of(code, message, **where))
