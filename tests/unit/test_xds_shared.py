"""Shared builds: one build per proxy class and per changed service, same result as the
reference ``build_resources``.

Given a mesh of services with DestinationRules and weighted VirtualServices, when many
proxies ask for their resources, then proxies of one class (namespace, and labels only if
a rule reads them) get the very same PreparedResource objects, built once; when one VirtualService's
weights change, then exactly one service's routes are rebuilt and no cluster is; and
whatever is shared, every proxy's resources equal what ``build_resources`` gives it.
"""

from __future__ import annotations

from typing import Any

import pytest

from meshpilot.api.identity import ObjectKey
from meshpilot.mesh.builder import SnapshotBuilder, build_snapshot
from meshpilot.mesh.model import InboundPort, MeshSnapshot, ProxyNode, WorkloadInstance
from meshpilot.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, SCOPED_ROUTE, ProxyConfigBuilder
from meshpilot.xds.consistency import referenced
from meshpilot.xds.resources import LayeredSet, SharedSet, prepare, versions
from meshpilot.xds.translate import build_resources

NET = "networking.istio.io"
SNAPSHOTS = SnapshotBuilder()
"""One snapshot builder for these tests, as the control plane keeps one: snapshots of
equal content share their objects."""


def node(i: int, namespace: str = "default", **kw: Any) -> ProxyNode:
    return ProxyNode(
        id=f"sidecar~127.30.0.{i}~p{i}.{namespace}", kind=kw.pop("kind", "sidecar"),
        namespace=namespace, ip=f"127.30.0.{i}", workload=f"p{i}",
        labels=kw.pop("labels", {"app": f"p{i}", "version": "v1"}),
        inbound=(InboundPort(9080, 40000 + i),), **kw)


def objects(n: int, weights: dict[int, int], extra: list[Any] | None = None) -> MeshSnapshot:
    objs: list[tuple[ObjectKey, dict[str, Any]]] = []
    pods: list[WorkloadInstance] = []
    for i in range(n):
        name = f"svc{i:03d}"
        meta = {"name": name, "namespace": "default"}
        w2 = weights.get(i, 10)
        objs.append((ObjectKey("", "Service", "default", name), {
            "apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8080}]}}))
        objs.append((ObjectKey(NET, "DestinationRule", "default", name), {
            "apiVersion": f"{NET}/v1", "kind": "DestinationRule", "metadata": meta,
            "spec": {"host": name, "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                               {"name": "v2", "labels": {"version": "v2"}}]}}))
        objs.append((ObjectKey(NET, "VirtualService", "default", name), {
            "apiVersion": f"{NET}/v1", "kind": "VirtualService", "metadata": meta,
            "spec": {"hosts": [name], "http": [{"route": [
                {"destination": {"host": name, "subset": "v1"}, "weight": 100 - w2},
                {"destination": {"host": name, "subset": "v2"}, "weight": w2}]}]}}))
        for v in ("v1", "v2"):
            pods.append(WorkloadInstance(
                name=f"{name}-{v}", namespace="default", ip=f"127.31.{i}.{1 + (v == 'v2')}",
                labels={"app": name, "version": v}, ports=(InboundPort(8080, 18080, "http"),)))
    # the test proxies' own pod: its container port is one of the mesh's sidecar ports
    pods.append(WorkloadInstance(name="p", namespace="default", ip="127.30.0.1",
                                 labels={"app": "p"}, ports=(InboundPort(9080, 40000),)))
    objs.extend(extra or [])
    return SNAPSHOTS.build(1, objs, pods)


def same_as_reference(builder: ProxyConfigBuilder, snap: MeshSnapshot, proxy: ProxyNode) -> None:
    """The same resources as the reference build, route configs as the proxy asks for
    them: by name, those its listeners and scopes name (the shared view may also hold
    other ports' inbound routes, which a proxy never asks for)."""
    got = builder.config_for(snap, proxy)
    want = prepare(build_resources(snap, proxy))
    asked = referenced(got)[ROUTE]
    got_routes = {n: e for n, e in got[ROUTE].items() if n in asked}
    assert versions(got_routes) == versions(want[ROUTE])
    assert {t: versions(v) for t, v in got.items() if t != ROUTE} == {
        t: versions(v) for t, v in want.items() if t != ROUTE}


def test_proxies_of_one_namespace_share_entries_built_once() -> None:
    builder = ProxyConfigBuilder()
    snap = objects(20, {})
    a, b = builder.config_for(snap, node(1)), builder.config_for(snap, node(2))
    assert builder.builds["class"] == 1
    assert builder.builds["clusters"] == 20 and builder.builds["routes"] == 20
    for t in (ENDPOINT, SCOPED_ROUTE, ROUTE):
        assert a[t] is b[t] and isinstance(a[t], SharedSet)
    # a node's own clusters are layered over the very same shared view, not copied in
    assert isinstance(a[CLUSTER], LayeredSet) and a[CLUSTER].base is b[CLUSTER].base
    shared = [n for n in a[CLUSTER] if n.startswith("outbound|")]
    assert shared and all(a[CLUSTER][n] is b[CLUSTER][n] for n in shared)
    assert a[CLUSTER]["inbound|9080||"] is not b[CLUSTER]["inbound|9080||"]  # its own app
    # the inbound routes (one route per counted caller) are one PreparedResource for every pod
    assert a[ROUTE]["inbound|9080||"] is b[ROUTE]["inbound|9080||"]
    assert a[LISTENER] is not b[LISTENER]  # listeners bind the node's own address
    same_as_reference(builder, snap, node(1))
    same_as_reference(builder, snap, node(2))


def test_a_new_caller_changes_the_shared_inbound_routes_not_the_listeners() -> None:
    builder = ProxyConfigBuilder()
    before = objects(3, {})
    old = builder.config_for(before, node(1))
    builder.config_for(before, node(2))
    counts = dict(builder.builds)
    after = objects(4, {})  # svc003's pods are new callers (telemetry sources)
    new, other = builder.config_for(after, node(1)), builder.config_for(after, node(2))
    assert builder.builds["node"] == counts["node"]  # listeners and clusters not rebuilt
    assert new[LISTENER] is old[LISTENER]
    assert new[ROUTE]["inbound|9080||"].version != old[ROUTE]["inbound|9080||"].version
    assert new[ROUTE] is other[ROUTE]
    same_as_reference(builder, after, node(1))


def test_an_unchanged_proxy_gets_the_very_same_views_back() -> None:
    builder = ProxyConfigBuilder()
    snap = objects(3, {})
    first = builder.config_for(snap, node(1))
    assert builder.config_for(snap, node(1)) is first
    again = objects(3, {})  # a new snapshot with the same content
    assert builder.config_for(again, node(1)) is first


def test_other_namespace_is_another_class_with_its_own_short_names() -> None:
    builder = ProxyConfigBuilder()
    snap = objects(5, {})
    builder.config_for(snap, node(1))
    other = builder.config_for(snap, node(3, namespace="prod"))
    assert builder.builds["class"] == 2
    assert "svc000" not in other[SCOPED_ROUTE]  # short name only inside its namespace
    same_as_reference(builder, snap, node(3, namespace="prod"))


def test_one_virtual_service_change_rebuilds_one_service_routes_only() -> None:
    builder = ProxyConfigBuilder()
    before = objects(30, {})
    old = builder.config_for(before, node(1))
    builder.config_for(before, node(2))
    counts = dict(builder.builds)
    after = objects(30, {7: 40})
    new = builder.config_for(after, node(1))
    builder.config_for(after, node(2))
    assert builder.builds["routes"] == counts["routes"] + 1
    assert builder.builds["clusters"] == counts["clusters"]
    assert builder.builds["node"] == counts["node"]  # listeners unchanged: not rebuilt
    for t in (CLUSTER, ENDPOINT, LISTENER, SCOPED_ROUTE):
        assert new[t] is old[t]  # unchanged views are the very same objects
    changed = [n for n, e in new[ROUTE].items() if old[ROUTE][n] is not e]
    assert changed == ["outbound|svc007.default.svc.cluster.local"]
    same_as_reference(builder, after, node(1))


def test_endpoint_change_rebuilds_that_service_clusters_only() -> None:
    builder = ProxyConfigBuilder()
    snap = objects(10, {})
    builder.config_for(snap, node(1))
    counts = dict(builder.builds)
    pods = [WorkloadInstance(name="extra", namespace="default", ip="127.32.0.1",
                             labels={"app": "svc004", "version": "v2"},
                             ports=(InboundPort(8080, 18080, "http"),))]
    objs = [(ObjectKey("", "Service", "default", "svc004"), {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "svc004", "namespace": "default"},
        "spec": {"selector": {"app": "svc004"}, "ports": [{"name": "http", "port": 8080}]}})]
    base = objects(10, {})
    grown = MeshSnapshot(
        version=2, services=base.services,
        endpoints={**base.endpoints, **build_snapshot(2, objs, pods).endpoints},
        virtual_services=base.virtual_services, destination_rules=base.destination_rules)
    builder.config_for(grown, node(1))
    assert builder.builds["clusters"] == counts["clusters"] + 1
    same_as_reference(builder, grown, node(1))


@pytest.mark.parametrize("kind", ["sidecar", "client", "gateway"])
def test_every_proxy_kind_matches_the_reference(kind: str) -> None:
    gateway = (ObjectKey(NET, "Gateway", "istio-system", "gw"), {
        "apiVersion": f"{NET}/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "istio-system"},
        "spec": {"selector": {"istio": "ingressgateway"},
                 "servers": [{"port": {"number": 80, "protocol": "HTTP", "name": "http"},
                              "hosts": ["*"]}]}})
    snap = objects(4, {}, [gateway])
    proxy = node(5, kind=kind, labels={"istio": "ingressgateway"},
                 gateway_ports={80: 18000} if kind == "gateway" else {})
    same_as_reference(ProxyConfigBuilder(), snap, proxy)


def test_source_labels_make_labels_part_of_the_class() -> None:
    labelled = (ObjectKey(NET, "VirtualService", "default", "by-source"), {
        "apiVersion": f"{NET}/v1", "kind": "VirtualService",
        "metadata": {"name": "by-source", "namespace": "default"},
        "spec": {"hosts": ["svc001"], "http": [
            {"match": [{"sourceLabels": {"version": "v2"}}],
             "route": [{"destination": {"host": "svc001", "subset": "v2"}}]},
            {"route": [{"destination": {"host": "svc001", "subset": "v1"}}]}]}})
    snap = objects(3, {}, [labelled])
    builder = ProxyConfigBuilder()
    v1, v2 = node(1), node(2, labels={"app": "p2", "version": "v2"})
    builder.config_for(snap, v1)
    builder.config_for(snap, v2)
    assert builder.builds["class"] == 2
    same_as_reference(builder, snap, v1)
    same_as_reference(builder, snap, v2)
    # labels do not split proxies when no rule reads them
    plain = ProxyConfigBuilder()
    snap = objects(3, {})
    plain.config_for(snap, v1)
    plain.config_for(snap, v2)
    assert plain.builds["class"] == 1


def test_a_proxys_secrets_are_its_own_and_the_roots_are_shared(tmp_path: Any) -> None:
    """SDS secrets ``default`` (its certificate and key) and ``ROOTCA`` (the trust bundle)
    are the proxy's own set; the bundle is one resource for every proxy; the same
    credential gives the very same config back, a renewed one changes the secrets only."""
    from datetime import UTC, datetime

    from meshpilot.security import load_or_create_self_signed_ca
    from meshpilot.security.workload_certs import CredentialSubject, WorkloadCertificates
    from meshpilot.xds.consistency import consistency_problems
    from meshpilot.xds.types import SECRET

    certs = WorkloadCertificates(load_or_create_self_signed_ca(tmp_path / "ca"))
    one, two = node(1), node(2)
    held = certs.current([CredentialSubject(n.id, n.namespace, n.service_account)
                          for n in (one, two)], datetime.now(UTC))
    builder = ProxyConfigBuilder()
    snap = objects(3, {})
    a = builder.config_for(snap, one, held[one.id])
    b = builder.config_for(snap, two, held[two.id])
    assert set(a[SECRET]) == {"default", "ROOTCA"}
    assert a[SECRET]["ROOTCA"] is b[SECRET]["ROOTCA"]
    assert a[SECRET]["default"].version != b[SECRET]["default"].version
    assert consistency_problems(a) == []
    assert builder.config_for(snap, one, held[one.id]) is a
    renewed = certs.current([CredentialSubject("x", "default", "other")])["x"]
    c = builder.config_for(snap, one, renewed)
    assert c[SECRET] is not a[SECRET] and all(c[t] is a[t] for t in a if t != SECRET)


def test_a_configs_consistency_is_checked_once_per_configuration_of_names(tmp_path: Any
                                                                          ) -> None:
    """The builder's configs carry their verdict; a weight change keeps every name, so the
    verdict found before is reused (the very object); a new service changes the names
    and is checked again; each verdict is what the full check finds (a proxy without its
    credential lacks the secrets its mTLS clusters name)."""
    from meshpilot.security import load_or_create_self_signed_ca
    from meshpilot.security.workload_certs import CredentialSubject, WorkloadCertificates
    from meshpilot.xds.consistency import consistency_problems
    from meshpilot.xds.resources import CheckedConfig

    one = node(1)
    certs = WorkloadCertificates(load_or_create_self_signed_ca(tmp_path / "ca"))
    credential = certs.current([CredentialSubject(one.id, one.namespace, "default")])[one.id]
    builder = ProxyConfigBuilder()
    first = builder.config_for(objects(4, {}), one, credential)
    assert type(first) is CheckedConfig and first.problems == ()
    reweighed = builder.config_for(objects(4, {2: 30}), one, credential)
    assert reweighed is not first and reweighed.problems is first.problems
    grown = builder.config_for(objects(5, {}), one, credential)
    assert grown.problems == tuple(consistency_problems(grown)) == ()
    bare = builder.config_for(objects(5, {}), one)  # no credential: refused, and why
    assert bare.problems == ("Secret missing: ROOTCA, default",)


def _credential_rule(namespace: str = "default") -> list[Any]:
    """A ServiceEntry host reached with MUTUAL TLS from the credential ``api-client``."""
    entry = {"apiVersion": f"{NET}/v1", "kind": "ServiceEntry",
             "metadata": {"name": "api", "namespace": namespace},
             "spec": {"hosts": ["api.example.com"], "location": "MESH_EXTERNAL",
                      "resolution": "DNS",
                      "ports": [{"number": 443, "name": "https", "protocol": "HTTP"}]}}
    rule = {"apiVersion": f"{NET}/v1", "kind": "DestinationRule",
            "metadata": {"name": "api", "namespace": namespace},
            "spec": {"host": "api.example.com", "trafficPolicy": {"tls": {
                "mode": "MUTUAL", "credentialName": "api-client"}}}}
    return [(ObjectKey(NET, "ServiceEntry", namespace, "api"), entry),
            (ObjectKey(NET, "DestinationRule", namespace, "api"), rule)]


def _client_secret(namespace: str) -> Any:
    from tests.integration.gateway_envoy import issue
    from tests.tls_pairs import b64

    root = issue("client root", ca=True)
    leaf = issue("client", root, client=True)
    return (ObjectKey("", "Secret", namespace, "api-client"), {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "api-client", "namespace": namespace},
        "data": {"tls.crt": b64(leaf.cert_pem), "tls.key": b64(leaf.key_pem),
                 "ca.crt": b64(root.cert_pem)}})


def test_a_client_credential_comes_from_the_proxys_namespace_shared_by_its_class() -> None:
    """DestinationRule ``credentialName``: the class's clusters name
    ``kubernetes://api-client`` and its ``-cacert``; every proxy of the class gets both
    secrets, from the Secret of its own namespace, as the reference build does; a proxy
    in a namespace without that Secret lacks them and its config is still whole (the
    cluster fails closed until the Secret comes)."""
    from meshpilot.xds.consistency import consistency_problems
    from meshpilot.xds.types import SECRET

    snap = objects(2, {}, [*_credential_rule(), _client_secret("default")])
    builder = ProxyConfigBuilder()
    one, two, elsewhere = node(1), node(2), node(3, "other")
    a, b = builder.config_for(snap, one), builder.config_for(snap, two)
    assert set(a[SECRET]) == {"kubernetes://api-client", "kubernetes://api-client-cacert"}
    assert a[SECRET] is b[SECRET]
    same_as_reference(builder, snap, one)
    other = builder.config_for(snap, elsewhere)
    assert SECRET not in other or not other[SECRET]
    # (no workload credential was given here: only default and ROOTCA are said missing)
    assert consistency_problems(other) == list(other.problems) == [
        "Secret missing: ROOTCA, default"]
    assert "kubernetes://api-client" in referenced(other)[SECRET]
