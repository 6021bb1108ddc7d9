"""The Kubernetes protobuf bodies kubectl's typed commands send, read into JSON.

``kubectl create namespace``, ``create configmap``, ``create secret generic`` and
``create serviceaccount`` build a typed object and send it as
``application/vnd.kubernetes.protobuf``: the 4-byte magic ``k8s\\0``, then a
``runtime.Unknown`` envelope (``typeMeta``, ``raw``) whose ``raw`` is the object's own
message. Only those four kinds' messages are read (field numbers from Kubernetes'
``generated.proto`` for core/v1 and meta/v1); a field this reader does not know that is
set in the message is refused, never dropped, so an object is stored whole or not at all.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

MAGIC = b"k8s\x00"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"

Fields = list[tuple[int, int, Any]]  # (field number, wire type, value)


class UnreadableProtobuf(ValueError):
    """A protobuf body this reader cannot turn into the object it holds, whole."""


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise UnreadableProtobuf("a varint runs past the end of the body")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """The (number, wire type, value) of each field: ints for varints, bytes for
    length-delimited fields; fixed-width fields are refused (none of these have one)."""
    at = 0
    while at < len(data):
        tag, at = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, at = _varint(data, at)
        elif wire == 2:
            size, at = _varint(data, at)
            if at + size > len(data):
                raise UnreadableProtobuf("a field runs past the end of the body")
            value, at = data[at:at + size], at + size
        else:
            raise UnreadableProtobuf(f"field {number} has wire type {wire}, not read here")
        yield number, wire, value


def _empty(value: Any) -> bool:
    """Whether a field holds only defaults (Go's encoder writes empty messages, and
    messages of empty strings, for fields a typed command leaves unset)."""
    if value in (b"", 0):
        return True
    if not isinstance(value, bytes):
        return False
    try:
        return all(_empty(item) for _, _, item in _fields(value))
    except UnreadableProtobuf:
        return False


def _text(value: Any) -> str:
    if not isinstance(value, bytes):
        raise UnreadableProtobuf("a string field is not length-delimited")
    return value.decode("utf-8")


def _entry(value: Any, decode: Callable[[bytes], Any]) -> tuple[str, Any]:
    """A map entry message: key (1) and value (2)."""
    key, out = "", decode(b"")
    for number, _, item in _fields(value):
        if number == 1:
            key = _text(item)
        elif number == 2:
            out = decode(item)
    return key, out


def _string(raw: bytes) -> str:
    return raw.decode("utf-8")


def _b64(raw: bytes) -> str:
    """Bytes as JSON carries them in a Secret's data: base64."""
    return base64.b64encode(raw).decode("ascii")


def _unknown(where: str, number: int) -> UnreadableProtobuf:
    return UnreadableProtobuf(
        f"{where} field {number} is set, and meshpilot does not read it from protobuf; "
        "write the object in a file and use kubectl apply -f")


def _metadata(data: bytes) -> dict[str, Any]:
    """ObjectMeta: name (1), namespace (3), labels (11), annotations (12); the
    server-set fields are ignored as an API server ignores them on create."""
    meta: dict[str, Any] = {}
    for number, _, value in _fields(data):
        if _empty(value):
            continue
        if number == 1:
            meta["name"] = _text(value)
        elif number == 3:
            meta["namespace"] = _text(value)
        elif number in (11, 12):
            name = "labels" if number == 11 else "annotations"
            key, item = _entry(value, _string)
            meta.setdefault(name, {})[key] = item
        elif number in (5, 6, 7, 8):  # uid, resourceVersion, generation, creationTimestamp
            continue
        else:
            raise _unknown("metadata", number)
    return meta


def _namespace(fields: Fields, body: dict[str, Any]) -> None:
    for number, _, _value in fields:  # spec (finalizers) and status (phase): unset
        raise _unknown("Namespace", number)


def _config_map(fields: Fields, body: dict[str, Any]) -> None:
    for number, _, value in fields:
        if number == 2:
            key, item = _entry(value, _string)
            body.setdefault("data", {})[key] = item
        elif number == 3:
            key, item = _entry(value, _b64)
            body.setdefault("binaryData", {})[key] = item
        elif number == 4:
            body["immutable"] = bool(value)
        else:
            raise _unknown("ConfigMap", number)


def _secret(fields: Fields, body: dict[str, Any]) -> None:
    for number, _, value in fields:
        if number in (2, 4):
            key, item = _entry(value, _b64 if number == 2 else _string)
            body.setdefault("data" if number == 2 else "stringData", {})[key] = item
        elif number == 3:
            body["type"] = _text(value)
        elif number == 5:
            body["immutable"] = bool(value)
        else:
            raise _unknown("Secret", number)


def _service_account(fields: Fields, body: dict[str, Any]) -> None:
    for number, _, value in fields:
        if number == 4:
            body["automountServiceAccountToken"] = bool(value)
        else:
            raise _unknown("ServiceAccount", number)


_KINDS: Mapping[str, Callable[[Fields, dict[str, Any]], None]] = MappingProxyType({
    "Namespace": _namespace, "ConfigMap": _config_map, "Secret": _secret,
    "ServiceAccount": _service_account})


def decode(data: bytes) -> dict[str, Any]:
    """The object a protobuf body holds, as the JSON body kubectl would have sent."""
    if not data.startswith(MAGIC):
        raise UnreadableProtobuf("the body does not start with Kubernetes' protobuf magic")
    api_version = kind = ""
    raw = b""
    for number, _, value in _fields(data[len(MAGIC):]):
        if number == 1:
            for field, _, text in _fields(value):
                if field in (1, 2):
                    api_version, kind = ((_text(text), kind) if field == 1
                                         else (api_version, _text(text)))
        elif number == 2:
            raw = value
    read = _KINDS.get(kind) if api_version == "v1" else None
    if read is None:
        raise UnreadableProtobuf(
            f"meshpilot reads {api_version} {kind} from JSON only (protobuf: "
            f"{', '.join(_KINDS)}); write the object in a file and use kubectl apply -f")
    body: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    rest: Fields = []
    for number, wire, value in _fields(raw):
        if number == 1:
            body["metadata"] = _metadata(value)
        elif not _empty(value):  # a field left unset, as Go writes it
            rest.append((number, wire, value))
    read(rest, body)
    return body
