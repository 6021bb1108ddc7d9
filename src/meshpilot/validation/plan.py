"""From raw files to a checked plan: load, check each document, check the result as a whole.

Used by the control plane for ``apply`` (against the stored state) and by
``meshpilot analyze`` offline (against nothing), so both give the same diagnostics.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import UnknownKind, resolve_type
from meshpilot.api.loader import InputTooLarge, LoadedDocument, LoadError, load_text
from meshpilot.api.yaml_bounds import NodeBudget
from meshpilot.validation import codes
from meshpilot.validation.diagnostics import Diagnostic, format_path, has_errors
from meshpilot.validation.document import ParsedObject, check_document
from meshpilot.validation.state import StateObject, check_state
from meshpilot.validation.state_index import StateIndex, judge_change


@dataclass
class Plan:
    """What an apply would write, and everything found on the way."""

    objects: list[ParsedObject] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if not d.is_error]


@dataclass(frozen=True)
class Generated:
    """Objects a controller built in memory, applied under the name ``file``.

    A person's file is parsed with the position of every field, so a diagnostic can
    name its line; that parse was about 45 % of a generated write's time, and a
    rollback's route waits for it. A controller's objects have no lines to point at, so
    they skip it: each is copied through JSON (what a text would have held: plain
    mappings, lists and scalars, nothing shared with the caller) and then checked
    exactly as a parsed document is. A diagnostic names ``file`` and the object.
    """

    file: str
    objects: tuple[Mapping[str, Any], ...]


Source = tuple[str, str] | Generated


def _generated_documents(source: Generated) -> list[LoadedDocument]:
    """Each object as a document; LoadError for one no text could have held (a cycle,
    a value JSON has no form for, a lone surrogate the YAML reader would refuse)."""
    docs = []
    for i, obj in enumerate(source.objects):
        try:
            text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
            text.encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            raise LoadError(source.file, 1, 1, f"object #{i + 1}: not plain JSON data: "
                            f"{exc}") from None
        docs.append(LoadedDocument(data=json.loads(text), file=source.file, index=i, line=1))
    return docs


def load_sources(
    sources: Iterable[Source],
) -> tuple[list[LoadedDocument], list[Diagnostic]]:
    """Parse every (file, text); a file that does not parse yields one MP0001 (MP0050 or
    MP0051 when it is over a limit). The node budget is the whole apply's, not a file's.
    :class:`Generated` objects are taken as they are, with no positions to find."""
    docs: list[LoadedDocument] = []
    diagnostics: list[Diagnostic] = []
    budget = NodeBudget()
    for source in sources:
        try:
            if isinstance(source, Generated):
                docs.extend(_generated_documents(source))
                continue
            file, text = source
            docs.extend(load_text(text, file, budget))
        except LoadError as exc:
            diagnostics.append(
                Diagnostic.of(_load_code(exc), exc.message, file=exc.file, line=exc.line,
                              column=exc.column)
            )
    return docs, diagnostics


def _load_code(exc: LoadError) -> codes.Code:
    if not isinstance(exc, InputTooLarge):
        return codes.PARSE
    return codes.TOO_DEEP if exc.limit == "depth" else codes.TOO_MANY_NODES


def plan_apply(
    sources: Iterable[Source], existing: Sequence[StateObject] | StateIndex = ()
) -> Plan:
    """Check ``sources`` as one all-or-nothing change on top of ``existing``: a list of
    objects is judged whole (``analyze``), an index only around the change (an apply to
    the control plane; the same findings, at a cost that does not grow with the store)."""
    docs, diagnostics = load_sources(sources)
    plan = Plan(diagnostics=diagnostics)
    seen: dict[ObjectKey, ParsedObject] = {}
    for doc in docs:
        parsed, found = check_document(doc)
        plan.diagnostics.extend(found)
        if parsed is None:
            continue
        first = seen.get(parsed.key)
        if first is not None:
            where = first.source.file if first.source else "?"
            line = first.source.line if first.source else "?"
            plan.diagnostics.append(
                Diagnostic.of(
                    codes.DUPLICATE_OBJECT,
                    f"{parsed.label} is given twice in this apply (first at {where}:{line})",
                    file=doc.file, line=doc.line, column=1, object=parsed.label,
                )
            )
            continue
        seen[parsed.key] = parsed
        plan.objects.append(parsed)
    if not docs and not diagnostics:
        return plan
    if plan.ok:
        plan.diagnostics.extend(_judge(plan.objects, existing))
    return plan


def _judge(objects: list[ParsedObject], existing: Sequence[StateObject] | StateIndex,
           ) -> list[Diagnostic]:
    state = existing if isinstance(existing, StateIndex) else {o.key: o for o in existing}
    changed = []
    for obj in objects:
        prior = state.get(obj.key)
        changed.append(StateObject(obj.key, obj.body, obj.source, changed=True,
                                   created=prior.creation_timestamp if prior else None))
    if isinstance(state, StateIndex):
        return judge_change(state, changed)
    state.update((obj.key, obj) for obj in changed)
    return check_state(list(state.values()))


def keys_in(sources: Iterable[tuple[str, str]]) -> tuple[list[ObjectKey], list[Diagnostic]]:
    """The objects that ``sources`` name (for ``delete -f``): only identity is checked."""
    docs, diagnostics = load_sources(sources)
    keys: list[ObjectKey] = []
    for doc in docs:
        data = doc.data if isinstance(doc.data, dict) else {}
        meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        try:
            info = resolve_type(str(data.get("apiVersion")), str(data.get("kind")))
        except UnknownKind as exc:
            pos = doc.position_of(("kind",))
            diagnostics.append(Diagnostic.of(codes.UNKNOWN_TYPE, str(exc), file=doc.file,
                                             line=pos.line, column=pos.column, path="kind"))
            continue
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            pos = doc.position_of(("metadata", "name"))
            diagnostics.append(Diagnostic.of(
                codes.MISSING_FIELD, "metadata.name is required", file=doc.file,
                line=pos.line, column=pos.column, path=format_path(("metadata", "name"))))
            continue
        keys.append(ObjectKey(info.group, info.kind, info.scope(str(meta.get("namespace") or "")),
                              name))
    return keys, diagnostics
