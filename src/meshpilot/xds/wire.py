"""Discovery responses encoded by hand, from parts encoded once.

A protobuf message is the concatenation of its fields, in any order. A response to a
thousand proxies of a class differs between them only in its nonce, so its other fields
(version, type URL, removed names, the resources' own prebuilt wire forms) are encoded
once per push and API, and each proxy's response is that plus its nonce: no protobuf
message is built per proxy per response (``benchmarks/stream_work.py`` guards the cost).
Tests parse what this writes with protobuf.
"""

from __future__ import annotations

from types import MappingProxyType

from meshpilot.xds.holdings import Push
from meshpilot.xds.resources import LayeredSet, ResourceSet, derived
from meshpilot.xds.types import SHORT_NAMES

# Field numbers shared by DiscoveryResponse and DeltaDiscoveryResponse.
VERSION_FIELD = 1
TYPE_URL_FIELD = 4
NONCE_FIELD = 5
REMOVED_FIELD = 6  # DeltaDiscoveryResponse.removed_resources


def wire_string(field_number: int, value: str) -> bytes:
    """One string field, encoded (tag, length, UTF-8 bytes)."""
    data = value.encode()
    n = len(data)
    if n < 0x80:  # a one-byte length: every nonce and version
        return bytes((field_number << 3 | 2, n)) + data
    length = bytearray()
    while n > 0x7F:
        length.append((n & 0x7F) | 0x80)
        n >>= 7
    length.append(n)
    return bytes((field_number << 3 | 2,)) + bytes(length) + data


_TYPE_URL_FIELDS: MappingProxyType[str, bytes] = MappingProxyType(
    {t: wire_string(TYPE_URL_FIELD, t) for t in SHORT_NAMES})


def response(api: str, type_url: str, push: Push, version: str, nonce: str) -> bytes:
    """The response's bytes. The part every proxy of the push gets alike is kept on the
    push (one encoding per API, with the version it was made for: a whole set's is
    megabytes)."""
    held = push.encoded.get(api)
    if held is not None and held[0] == version:
        shared = held[1]
    else:
        typed = _TYPE_URL_FIELDS.get(type_url) or wire_string(TYPE_URL_FIELD, type_url)
        shared = b"".join((wire_string(VERSION_FIELD, version), typed,
                           _shared_part(push, api == "sotw")))
        push.encoded[api] = (version, shared)
    return shared + wire_string(NONCE_FIELD, nonce)


def _shared_part(push: Push, sotw: bool) -> bytes:
    """Removed names (Delta) and the resources."""
    removed = b"" if sotw else b"".join(wire_string(REMOVED_FIELD, n) for n in push.removed)
    return removed + (_whole_set if push.entire_set else _joined)(push.resources, sotw)


def _whole_set(resource_set: ResourceSet, sotw: bool) -> bytes:
    """Every resource of a set, encoded as a response's ``resources``: once per set."""
    if type(resource_set) is LayeredSet and not resource_set.overlaps():
        return _whole_set(resource_set.base, sotw) + _whole_set(resource_set.top, sotw)
    key = "sotw_body" if sotw else "delta_body"
    return derived(key, resource_set, _joined, resource_set, sotw)  # type: ignore[no-any-return]


def _joined(resources: ResourceSet, sotw: bool) -> bytes:
    if sotw:
        return b"".join(e.sotw_wire for e in resources.values())
    return b"".join(e.delta_wire for e in resources.values())
