"""Checks on one document by itself: shape, kind, and every field against its model.

The typed models carry the per-field rules (ranges, durations, RE2 regexes, weights);
this module turns pydantic's errors into diagnostics that name file, line, field path
and, for an unknown field, the fields that are valid at that place.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from meshpilot.api.base import Resource
from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import KindInfo, UnknownKind, by_kind, resolve_type
from meshpilot.api.loader import LoadedDocument
from meshpilot.validation import codes
from meshpilot.validation.diagnostics import Diagnostic, format_path
from meshpilot.validation.rules import canonical, findings_for


@dataclass
class ParsedObject:
    """A document that passed its own checks, with where it came from."""

    info: KindInfo
    model: Resource
    body: dict[str, Any]  # the document as written, metadata.namespace filled in
    source: LoadedDocument | None

    @property
    def key(self) -> ObjectKey:
        meta = self.model.metadata
        return ObjectKey(self.info.group, self.info.kind, meta.namespace, meta.name)

    @property
    def label(self) -> str:
        return str(self.key)


def _where(doc: LoadedDocument, path: tuple[str | int, ...]) -> dict[str, Any]:
    pos = doc.position_of(path)
    return {"file": doc.file, "line": pos.line, "column": pos.column, "path": format_path(path)}


def _object_label(data: dict[str, Any]) -> str:
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    kind = data.get("kind") if isinstance(data.get("kind"), str) else "?"
    name = meta.get("name", "?") if isinstance(meta, dict) else "?"
    ns = meta.get("namespace", "default") if isinstance(meta, dict) else "default"
    try:
        if not by_kind(kind).namespaced:
            return f"{kind} {name}"
    except UnknownKind:
        pass
    return f"{kind} {ns}/{name}"


def check_document(doc: LoadedDocument) -> tuple[ParsedObject | None, list[Diagnostic]]:
    """Validate one loaded document; return the parsed object or the reasons it failed."""
    data = doc.data
    if not isinstance(data, dict):
        return None, [
            Diagnostic.of(
                codes.NOT_AN_OBJECT,
                f"a document must be a mapping with apiVersion and kind, not a "
                f"{type(data).__name__}",
                **_where(doc, ()),
            )
        ]
    label = _object_label(data)
    missing = [f for f in ("apiVersion", "kind") if not isinstance(data.get(f), str)]
    if missing:
        return None, [
            Diagnostic.of(
                codes.MISSING_TYPE,
                f"{' and '.join(missing)} must be set (a string)",
                object=label,
                **_where(doc, ()),
            )
        ]
    try:
        info = resolve_type(data["apiVersion"], data["kind"])
    except UnknownKind as exc:
        field = "kind" if "unknown kind" in str(exc) else "apiVersion"
        return None, [
            Diagnostic.of(codes.UNKNOWN_TYPE, str(exc), object=label, **_where(doc, (field,)))
        ]
    try:
        model = info.model.model_validate(data)
    except ValidationError as exc:
        found = _pydantic_diagnostics(exc, info, doc, label)
        # The kind's own rules still run on what was written, so one round of fixes
        # can address every error; a path the model already faults is not repeated.
        seen = {d.path for d in found}
        more = [d for d in _rule_errors(info, data, doc, label) if d.path not in seen]
        return None, found + more
    errors = _rule_errors(info, canonical(model), doc, label)
    if errors:
        return None, errors
    body = dict(data)
    metadata = dict(body.get("metadata") or {})
    metadata["namespace"] = model.metadata.namespace
    body["metadata"] = metadata
    return ParsedObject(info=info, model=model, body=body, source=doc), []


def _rule_errors(
    info: KindInfo, body: dict[str, Any], doc: LoadedDocument, label: str
) -> list[Diagnostic]:
    """The errors of the kind's rules; their warnings are reported by check_state."""
    return [
        Diagnostic.of(f.code, f.message, object=label, **_where(doc, f.path))
        for f in findings_for(info.kind, body) if f.is_error
    ]


def _pydantic_diagnostics(
    exc: ValidationError, info: KindInfo, doc: LoadedDocument, label: str
) -> list[Diagnostic]:
    by_path: dict[tuple[str | int, ...], list[tuple[str, str]]] = {}
    for error in exc.errors():
        path = _data_path(error["loc"], doc.data)
        by_path.setdefault(path, []).append((error["type"], _message(error, info, path)))
    out = []
    for path, errors in by_path.items():
        # A union (e.g. int | str) reports one error per member; the first names the code.
        error_type = errors[0][0]
        messages = list(dict.fromkeys(m for _, m in errors))
        out.append(
            Diagnostic.of(
                codes.code_for_pydantic(error_type),
                " or ".join(messages) if len(messages) > 1 else messages[0],
                object=label,
                **_where(doc, path),
            )
        )
    return out


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[str | int, ...]:
    """Drop pydantic's union/validator tags from ``loc``, keeping only real data keys."""
    path: list[str | int] = []
    node = data
    for part in loc:
        in_list = isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node)
        in_dict = isinstance(part, str) and isinstance(node, dict) and part in node
        if in_list or in_dict:
            path.append(part)
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and not _looks_like_tag(part):
            path.append(part)  # a missing or forbidden field: keep its name
            node = None
    return tuple(path)


def _looks_like_tag(part: str) -> bool:
    return "[" in part or part in {"int", "str", "float", "bool", "list", "dict", "none"} or (
        part.startswith(("function-", "constrained-", "lax-", "json-"))
    )


def _message(error: dict[str, Any], info: KindInfo, path: tuple[str | int, ...]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = _valid_fields(info.model, path[:-1])
        field = str(path[-1]) if path else "?"
        close = _closest(field, valid)
        hint = f" (did you mean {close!r}?)" if close else ""
        listing = f"; valid fields here: {', '.join(valid)}" if valid else ""
        return f"unknown field {field!r}{hint}{listing}"
    if kind == "missing":
        return f"required field {path[-1]!r} is missing" if path else "required field missing"
    message = str(error.get("msg", "invalid value"))
    if kind == "literal_error":
        return message.replace("Input should be", "must be")
    got = error.get("input")
    sensitive = bool(path) and path[0] in info.model.SENSITIVE_FIELDS  # never echo a credential
    if codes.code_for_pydantic(kind) in (codes.WRONG_TYPE, codes.OUT_OF_RANGE) and not (
        sensitive or isinstance(got, dict | list)
    ):
        return f"{message} (got {got!r})"
    return message


def _closest(field: str, valid: list[str]) -> str | None:
    """The valid name ``field`` most likely meant: the same name in other case or with
    underscores (``jwksURI``, ``jwks_uri``), else the closest spelling."""
    def fold(name: str) -> str:
        return name.replace("_", "").replace("-", "").lower()

    same = [v for v in valid if fold(v) == fold(field)]
    if same:
        return same[0]
    lowered = {v.lower(): v for v in valid}
    close = difflib.get_close_matches(field.lower(), list(lowered), n=1)
    return lowered[close[0]] if close else None


def _valid_fields(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """The wire names of the fields allowed at ``path`` inside ``model``, if known."""
    current: Any = model
    for part in path:
        current = _step(current, part)
        if current is None:
            return []
    target = _unwrap_model(current)
    if target is None:
        return []
    return sorted(f.alias or name for name, f in target.model_fields.items())


def _step(annotation: Any, part: str | int) -> Any:
    if isinstance(part, int):
        return _item_type(annotation)
    model = _unwrap_model(annotation)
    if model is not None:
        for name, field in model.model_fields.items():
            if part in (field.alias, name):
                return field.annotation
        return None
    # A mapping from user keys to values: step into the value type.
    for arg in _flatten(annotation):
        if typing.get_origin(arg) is dict:
            return typing.get_args(arg)[1]
    return None


def _item_type(annotation: Any) -> Any:
    for arg in _flatten(annotation):
        if typing.get_origin(arg) in (list, tuple) and typing.get_args(arg):
            return typing.get_args(arg)[0]
    return None


def _flatten(annotation: Any) -> list[Any]:
    """The members of a union / Optional / Annotated, flattened."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _flatten(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _flatten(a)]
    return [annotation]


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    for arg in _flatten(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
