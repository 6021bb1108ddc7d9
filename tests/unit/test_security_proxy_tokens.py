"""Proxy tokens: bound to one node id and to the workload identity the control plane gave
that node, kept under an owner-only key, compared in constant time (hmac.compare_digest).

Follows Istio's xDS authorization (pilot's ``checkConnectionIdentity``): a stream whose
node metadata names another namespace or service account than the identity its
credential proves is refused. Here the token binds those, and the workload, pod name,
labels and proxy kind as well (what the config, the policies and the failure reports
are chosen by)."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest
from google.protobuf import json_format, struct_pb2
from tests.builders import sidecar_node

from meshpilot.mesh.model import ProxyNode, node_from_metadata, node_to_metadata
from meshpilot.security.proxy_tokens import KEY_FILE, BoundIdentity, ProxyTokens

TOKENS = ProxyTokens(b"k" * 32)
POD = ProxyNode(id="sidecar~127.10.0.7~web-7d9f-abcde.shop~shop.svc.cluster.local",
                kind="sidecar", namespace="shop", ip="127.10.0.7", workload="web",
                name="web-7d9f-abcde", service_account="web-sa",
                labels={"app": "web", "version": "v1"})


def test_a_plain_subjects_token_is_good_for_that_subject_only() -> None:
    token = TOKENS.token_for("node-a")
    assert TOKENS.verify("node-a", token)
    assert not TOKENS.verify("node-b", token)
    assert not TOKENS.verify("node-a", None) and not TOKENS.verify("node-a", "")
    assert not TOKENS.verify("node-a", token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert not ProxyTokens(b"x" * 32).verify("node-a", token)  # another key


def test_a_proxy_token_is_good_for_its_node_as_issued_only() -> None:
    token = TOKENS.for_proxy(POD)
    assert TOKENS.verify_proxy(POD, token)
    assert not TOKENS.verify_proxy(POD, None) and not TOKENS.verify_proxy(POD, "")
    assert not TOKENS.verify_proxy(replace(POD, id=POD.id.replace("abcde", "fghij")), token)
    assert not ProxyTokens(b"x" * 32).verify_proxy(POD, token)  # another key
    # neither the node-id-only token of earlier releases nor a host credential opens it
    assert not TOKENS.verify_proxy(POD, TOKENS.token_for(POD.id))
    assert not TOKENS.verify(POD.id, token)


@pytest.mark.parametrize("claimed", [
    {"namespace": "default"}, {"workload": "payments"}, {"name": "payments-1-xyz"},
    {"service_account": "payments-sa"}, {"service_account": "default"},
    {"labels": {"app": "payments", "version": "v1"}},
    {"labels": {"app": "web", "version": "v2"}},  # the canary's, from the primary's pod
    {"labels": {"app": "web"}}, {"labels": {"app": "web", "version": "v1", "extra": "x"}},
    {"kind": "gateway"}, {"kind": "client"},
], ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_a_node_declaring_another_identity_with_its_own_token_is_refused(
        claimed: dict[str, object]) -> None:
    """Node A's genuine token, presented with any identity field of another workload's
    metadata, is not the token of the node as it declares itself."""
    token = TOKENS.for_proxy(POD)
    assert not TOKENS.verify_proxy(replace(POD, **claimed), token)  # type: ignore[arg-type]


def test_operational_fields_are_not_bound() -> None:
    """Ports, addresses and the access log shape the proxy's own config only: a restarted
    pod's sidecar with other local ports keeps its token valid (same id, same identity)."""
    token = TOKENS.for_proxy(POD)
    moved = replace(POD, outbound_port=15999, app_ip="127.77.0.7", access_log="/tmp/x.log")
    assert TOKENS.verify_proxy(moved, token)


def test_the_binding_survives_envoys_node_metadata() -> None:
    """What the issuer binds is what the server reads back: the node as the bootstrap
    writes it (``node_to_metadata``), carried in Envoy's node (a protobuf Struct) and
    parsed by ``node_from_metadata``: same identity, label order and the default service
    account notwithstanding."""
    for node in (POD, replace(POD, service_account="", labels={"version": "v1", "app": "web"}),
                 sidecar_node("db-1", "127.10.0.9", labels={}, workload="db")):
        struct = struct_pb2.Struct()
        struct.update(node_to_metadata(node))
        back = node_from_metadata(node.id, json_format.MessageToDict(struct))
        assert BoundIdentity.of(back) == BoundIdentity.of(node)
        assert TOKENS.verify_proxy(back, TOKENS.for_proxy(node))


def test_an_issuer_without_a_node_binds_the_same_identity() -> None:
    """Joined hosts' sidecars are described by their agent from the facts the control
    plane sent; the control plane binds those facts with ``BoundIdentity.issued``."""
    identity = BoundIdentity.issued(kind="sidecar", namespace="shop", workload="web",
                                    name="web-7d9f-abcde", service_account="web-sa",
                                    labels={"version": "v1", "app": "web"})
    assert identity == BoundIdentity.of(POD)
    assert TOKENS.verify_proxy(POD, TOKENS.issue(POD.id, identity))
    assert BoundIdentity.issued(kind="sidecar", namespace="shop", workload="w", name="w",
                                service_account="", labels={}).service_account == "default"


def test_fields_cannot_be_shifted_into_one_another() -> None:
    """The message is unambiguous: moving text between fields gives another token."""
    a = replace(POD, workload="web", name="x-y")
    b = replace(POD, workload="web-x", name="y")
    c = replace(POD, labels={"a": "b=c"})
    d = replace(POD, labels={"a=b": "c"})
    assert TOKENS.for_proxy(a) != TOKENS.for_proxy(b)
    assert TOKENS.for_proxy(c) != TOKENS.for_proxy(d)


def test_the_key_is_made_once_owner_only_and_reused(tmp_path: Path) -> None:
    first = ProxyTokens.in_directory(tmp_path / "secrets")
    key = tmp_path / "secrets" / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = ProxyTokens.in_directory(tmp_path / "secrets")  # a restarted control plane
    assert again.verify("node-a", first.token_for("node-a"))
    assert again.verify_proxy(POD, first.for_proxy(POD))
