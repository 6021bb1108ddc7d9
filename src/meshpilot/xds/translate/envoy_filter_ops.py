"""The operations of an EnvoyFilter patch on a list of Envoy objects, and Istio's MERGE.

``edit`` applies one operation to an ordered list (HTTP filters, network filters,
routes, virtual hosts, filter chains) as Istio documents it: INSERT_BEFORE /
INSERT_AFTER are relative to the first element the match selects, and without such a
selection put the value first / last; INSERT_FIRST and ADD put it first / last; MERGE,
REMOVE and REPLACE act on every selected element.

MERGE is protobuf's merge (scalars set, messages merged, repeated fields appended),
except that a duration, timestamp or wrapped scalar the value sets replaces the old one
whole (a merged ``connect_timeout: 0.25s`` over ``10s`` is 0.25 s, not 10.25 s), and
where both sides hold a ``typed_config`` of the same type: those are unpacked, merged
and packed again, so a patch can change one field of a filter's config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from google.protobuf import any_pb2, symbol_database
from google.protobuf.message import Message

from meshpilot.api.envoy_values import load_type, type_name
from meshpilot.xds.translate import pb

M = TypeVar("M", bound=Message)


def _unpacked(packed: any_pb2.Any) -> Message | None:
    name = type_name(packed.type_url)
    if not load_type(name):
        return None
    message: Message = symbol_database.Default().GetSymbol(name)()
    return message if packed.Unpack(message) else None


_ATOMIC = frozenset({"google.protobuf.Duration", "google.protobuf.Timestamp",
                     "google.protobuf.BoolValue", "google.protobuf.UInt32Value",
                     "google.protobuf.UInt64Value", "google.protobuf.Int32Value",
                     "google.protobuf.Int64Value", "google.protobuf.DoubleValue",
                     "google.protobuf.FloatValue", "google.protobuf.StringValue"})
"""Messages that stand for one value: a MERGE replaces them."""


def _clear_atomics(target: Message, value: Message) -> None:
    """Clear in ``target`` every single-value message ``value`` sets, at any depth of
    singular message fields, so the merge that follows replaces them."""
    for field, item in value.ListFields():
        if field.type != field.TYPE_MESSAGE or field.is_repeated:
            continue
        if field.message_type.full_name in _ATOMIC:
            target.ClearField(field.name)
        elif target.HasField(field.name):
            _clear_atomics(getattr(target, field.name), item)


def merge(target: Message, value: Message) -> None:
    """Istio's MERGE of ``value`` into ``target`` (see the module's docstring)."""
    fields = target.DESCRIPTOR.fields_by_name
    typed = fields.get("typed_config")
    if typed is not None and value.HasField("typed_config") and \
            target.HasField("typed_config"):  # type: ignore[arg-type]
        mine, theirs = target.typed_config, value.typed_config  # type: ignore[attr-defined]
        rest = type(value)()
        rest.CopyFrom(value)
        rest.ClearField("typed_config")  # type: ignore[arg-type]
        if mine.type_url == theirs.type_url and (inner := _unpacked(mine)) is not None \
                and (other := _unpacked(theirs)) is not None:
            _clear_atomics(inner, other)
            inner.MergeFrom(other)
            packed = pb.pack(inner)
        else:  # another type: the value's config replaces the old one
            packed = theirs
        _clear_atomics(target, rest)
        target.MergeFrom(rest)
        target.typed_config.CopyFrom(packed)  # type: ignore[attr-defined]
        return
    _clear_atomics(target, value)
    target.MergeFrom(value)


def _copy(value: M) -> M:
    out = type(value)()
    out.CopyFrom(value)
    return out


def edit(items: Sequence[M], operation: str, value: M | None,
         picked: Callable[[M], bool], anchored: bool) -> list[M]:
    """``items`` after ``operation``; ``anchored``: the match names an element that
    inserts are relative to (``picked`` tells it)."""
    out = [_copy(item) for item in items]
    hits = [i for i, item in enumerate(out) if picked(item)]
    if operation in ("MERGE", "REPLACE", "REMOVE"):
        return _in_place(out, hits, operation, value)
    assert value is not None
    if operation == "INSERT_FIRST":
        return [_copy(value), *out]
    if operation == "ADD":
        return [*out, _copy(value)]
    if not anchored:
        at = 0 if operation == "INSERT_BEFORE" else len(out)
    elif not hits:
        return out  # the element it is relative to is not there: nothing to do
    else:
        at = hits[0] if operation == "INSERT_BEFORE" else hits[0] + 1
    return [*out[:at], _copy(value), *out[at:]]


def _in_place(out: list[M], hits: list[int], operation: str, value: M | None) -> list[M]:
    if operation == "REMOVE":
        gone = set(hits)
        return [item for i, item in enumerate(out) if i not in gone]
    assert value is not None
    for i in hits:
        if operation == "MERGE":
            merge(out[i], value)
        else:
            out[i] = _copy(value)
    return out


def rewrite(field: object, items: list[M]) -> None:
    """Put ``items`` into the repeated message ``field`` in place of what it held."""
    del field[:]  # type: ignore[attr-defined]
    field.extend(items)  # type: ignore[attr-defined]
