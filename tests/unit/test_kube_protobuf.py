"""Reading the protobuf bodies of kubectl's typed create commands
(meshpilot.server.kube_protobuf), built here with the field numbers of Kubernetes'
core/v1 and meta/v1 generated.proto and the ``k8s\\0`` + runtime.Unknown envelope the
API server's protobuf serializer reads."""

from __future__ import annotations

import pytest

from meshpilot.server.kube_protobuf import UnreadableProtobuf, decode


def varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def field(number: int, value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(raw)) + raw


def entry(number: int, key: str, value: str | bytes) -> bytes:
    return field(number, field(1, key) + field(2, value))


def envelope(kind: str, raw: bytes, api_version: str = "v1") -> bytes:
    type_meta = field(1, api_version) + field(2, kind)
    return b"k8s\x00" + field(1, type_meta) + field(2, raw) + field(3, "") + field(4, "")


def meta(name: str, **labels: str) -> bytes:
    # empty fields as Go writes them: generateName, namespace, a status with an empty phase
    return field(1, field(1, name) + field(2, "") + field(3, "")
                 + b"".join(entry(11, k, v) for k, v in labels.items()))


def test_a_namespace_as_kubectl_create_namespace_sends_it() -> None:
    raw = meta("team-a", tier="gold") + field(2, b"") + field(3, field(1, ""))
    assert decode(envelope("Namespace", raw)) == {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "team-a", "labels": {"tier": "gold"}}}


def test_a_config_map_and_a_secret() -> None:
    cm = decode(envelope("ConfigMap", meta("c") + entry(2, "a", "b") + entry(3, "bin", b"\x00")
                         + field(4, 0)))
    assert cm["data"] == {"a": "b"} and cm["binaryData"] == {"bin": "AA=="}
    assert "immutable" not in cm  # false, as Go leaves it
    secret = decode(envelope("Secret", meta("s") + entry(2, "pw", b"hunter2") + field(3, "Opaque")))
    assert secret["data"] == {"pw": "aHVudGVyMg=="} and secret["type"] == "Opaque"


def test_what_is_not_read_is_refused_not_dropped() -> None:
    with pytest.raises(UnreadableProtobuf, match="apps/v1 Deployment from JSON only"):
        decode(envelope("Deployment", meta("d"), api_version="apps/v1"))
    with pytest.raises(UnreadableProtobuf, match="Namespace field 2"):
        decode(envelope("Namespace", meta("n") + field(2, field(1, "kubernetes"))))
    with pytest.raises(UnreadableProtobuf, match="metadata field 13"):
        decode(envelope("ConfigMap", field(1, field(1, "c") + field(13, field(1, "v1")))))
    with pytest.raises(UnreadableProtobuf, match="magic"):
        decode(b'{"kind": "Namespace"}')
    with pytest.raises(UnreadableProtobuf, match="past the end"):
        decode(b"k8s\x00" + varint(1 << 3 | 2) + varint(50) + b"short")
