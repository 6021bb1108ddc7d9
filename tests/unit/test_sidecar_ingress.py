"""A Sidecar's ``ingress`` listeners and ``inboundConnectionPool``, after Istio's Sidecar
reference page: where each ingress port forwards (``defaultEndpoint`` 127.0.0.1:PORT,
0.0.0.0:PORT, unix sockets, none), which protocol it speaks, what the inbound clusters
look like, that Service endpoints follow the ingress ports, that the shared build gives
what the reference build gives, and what the model refuses."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from pydantic import ValidationError
from tests.unit.test_xds_shared import same_as_reference

from meshpilot.api.identity import ObjectKey
from meshpilot.api.networking import SIDECAR_OUTBOUND_PORT, Sidecar
from meshpilot.mesh.builder import build_snapshot
from meshpilot.mesh.model import OUTBOUND_PROXY_PORT, InboundPort, ProxyNode, WorkloadInstance
from meshpilot.mesh.sidecar_ingress import inbound_of
from meshpilot.validation import plan_apply
from meshpilot.xds import ProxyConfigBuilder
from meshpilot.xds.translate import (
    TYPE_CLUSTER,
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SECRET,
    build_resources,
)

NET = "networking.istio.io"
IP = "127.40.0.9"
DECLARED = (InboundPort(9080, 41000, "http-web"), InboundPort(7000, 41001, "tcp-db", "TCP"))


def sidecar(spec: str) -> Sidecar:
    return Sidecar.model_validate({"apiVersion": f"{NET}/v1", "kind": "Sidecar",
                                   "metadata": {"name": "ratings", "namespace": "prod"},
                                   "spec": yaml.safe_load(spec)})


def by_port(ports: tuple[InboundPort, ...]) -> dict[int, tuple[int, str]]:
    return {p.container_port: (p.app_port, p.protocol) for p in ports}


def test_default_endpoints_map_onto_the_pods_own_address() -> None:
    """127.0.0.1:P and 0.0.0.0:P are the app's port P on the pod (its app port when a
    container declares P); unix:// is a socket; no defaultEndpoint is the port itself
    (Istio's original-destination passthrough)."""
    found = inbound_of(sidecar("""
ingress:
- {port: {number: 9080, protocol: HTTP, name: web}, defaultEndpoint: "127.0.0.1:8080"}
- {port: {number: 9090, protocol: GRPC}, defaultEndpoint: "0.0.0.0:9080"}
- {port: {number: 9091, protocol: HTTP}, defaultEndpoint: "unix:///run/app.sock"}
- {port: {number: 7000, protocol: TCP}}
"""), DECLARED)
    assert by_port(found.ports) == {9080: (8080, "HTTP"), 9090: (41000, "GRPC"),
                                    9091: (0, "HTTP"), 7000: (41001, "TCP")}
    assert [s.unix_path for s in found.settings if s.container_port == 9091] == [
        "/run/app.sock"]
    names = {p.container_port: p.name for p in found.ports}
    assert names[9080] == "http-web"  # a declared port keeps its name (named targetPorts)


def test_a_listener_whose_traffic_would_come_back_is_left_out() -> None:
    """No defaultEndpoint on a port no container declares: the sidecar would forward to
    itself; as with a target that is another of its listeners."""
    found = inbound_of(sidecar("""
ingress:
- {port: {number: 9500, protocol: HTTP}}
- {port: {number: 9501, protocol: HTTP}, defaultEndpoint: "127.0.0.1:9500"}
"""), DECLARED)
    assert set(by_port(found.ports)) == {9080, 7000}  # the declared ports stay


def test_protocols_follow_the_port_then_its_name() -> None:
    found = inbound_of(sidecar("""
ingress:
- {port: {number: 9080, protocol: MONGO}, defaultEndpoint: "127.0.0.1:8080"}
- {port: {number: 9081, name: tcp-raw}, defaultEndpoint: "127.0.0.1:8081"}
- {port: {number: 9082}, defaultEndpoint: "127.0.0.1:8082"}
- {port: {number: 7000}}
"""), DECLARED)
    assert {p: proto for p, (_, proto) in by_port(found.ports).items()} == {
        9080: "TCP", 9081: "TCP", 9082: "HTTP", 7000: "TCP"}


def test_the_connection_pool_of_a_listener_else_the_sidecars() -> None:
    found = inbound_of(sidecar("""
ingress:
- port: {number: 9080, protocol: HTTP}
  defaultEndpoint: "127.0.0.1:8080"
  connectionPool: {tcp: {maxConnections: 2}}
inboundConnectionPool: {tcp: {maxConnections: 9}}
"""), DECLARED)
    pools = {s.container_port: s.pool.tcp.max_connections  # type: ignore[union-attr]
             for s in found.settings}
    assert pools == {9080: 2, 7000: 9}


def _objects(ingress: bool) -> list[tuple[ObjectKey, dict[str, Any]]]:
    meta = {"name": "ratings", "namespace": "prod"}
    out = [(ObjectKey("", "Service", "prod", "ratings"), {
        "apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {"selector": {"app": "ratings"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 9999}]}})]
    if ingress:
        out.append((ObjectKey(NET, "Sidecar", "prod", "ratings"), {
            "apiVersion": f"{NET}/v1", "kind": "Sidecar", "metadata": meta,
            "spec": {"workloadSelector": {"labels": {"app": "ratings"}},
                     "ingress": [{"port": {"number": 9999, "protocol": "HTTP"},
                                  "defaultEndpoint": "unix:///run/ratings.sock"}],
                     "inboundConnectionPool": {"http": {"http2MaxRequests": 4}}}}))
    return out


POD = WorkloadInstance(name="ratings-1", namespace="prod", ip=IP, labels={"app": "ratings"},
                       ports=DECLARED, workload="ratings")
NODE = ProxyNode(id=f"sidecar~{IP}~ratings-1.prod", kind="sidecar", namespace="prod", ip=IP,
                 workload="ratings", name="ratings-1", labels={"app": "ratings"},
                 inbound=DECLARED)


def test_service_endpoints_follow_the_ingress_ports() -> None:
    """A targetPort no container declares gets endpoints once an ingress listener
    serves it, as a Kubernetes Service lands on any port of the pod."""
    without = build_snapshot(1, _objects(False), [POD])
    assert without.endpoints["ratings.prod.svc.cluster.local"] == ()
    found = build_snapshot(2, _objects(True), [POD]).endpoints["ratings.prod.svc.cluster.local"]
    assert [(e.address, e.port) for e in found] == [(IP, 9999)]


def test_the_inbound_cluster_of_an_ingress_port() -> None:
    snapshot = build_snapshot(1, _objects(True), [POD])
    resources = build_resources(snapshot, NODE)
    assert {"inbound_9999", "inbound_9080", "inbound_7000"} <= set(resources[TYPE_LISTENER])
    cluster: cluster_pb2.Cluster = resources[TYPE_CLUSTER]["inbound|9999||"]  # type: ignore
    endpoint = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint
    assert endpoint.address.pipe.path == "/run/ratings.sock"
    for name in ("inbound|9999||", "inbound|9080||", "inbound|7000||"):
        limits = resources[TYPE_CLUSTER][name].circuit_breakers.thresholds[0]  # type: ignore
        assert limits.max_requests.value == 4, name
    plain = build_resources(build_snapshot(1, _objects(False), [POD]), NODE)
    assert "inbound_9999" not in plain[TYPE_LISTENER]
    assert plain[TYPE_CLUSTER]["inbound|9080||"].circuit_breakers.thresholds[  # type: ignore
        0].max_requests.value != 4


def test_the_shared_build_follows_the_sidecar() -> None:
    builder = ProxyConfigBuilder()
    same_as_reference(builder, build_snapshot(1, _objects(False), [POD]), NODE)
    same_as_reference(builder, build_snapshot(2, _objects(True), [POD]), NODE)
    got = builder.config_for(build_snapshot(3, _objects(True), [POD]), NODE)
    assert "inbound_9999" in got[TYPE_LISTENER]
    same_as_reference(builder, build_snapshot(4, _objects(False), [POD]), NODE)


@pytest.mark.parametrize(("spec", "says"), [
    ("ingress: [{port: {number: 80}}, {port: {number: 80}}]", "listed twice"),
    ("ingress: [{port: {number: 80, protocol: UDP}}]", "not served by a sidecar"),
    ("ingress: [{port: {number: 15001}}]", "outbound HTTP proxy listener"),
    ("ingress: [{port: {number: 80}, defaultEndpoint: '10.0.0.1:80'}]", "127.0.0.1:PORT"),
    ("ingress: [{port: {number: 80}, defaultEndpoint: 'unix://relative'}]", "unix:///"),
    ("ingress: [{port: {number: 80}, tls: {credentialName: c}}]", "PASSTHROUGH"),
    ("ingress: [{port: {number: 80}, tls: {mode: ISTIO_MUTUAL}}]", "ISTIO_MUTUAL"),
    ("ingress: [{port: {number: 80}, tls: {mode: SIMPLE, serverCertificate: /c.pem}}]",
     "serverCertificate and privateKey"),
    ("ingress: [{port: {number: 80}, tls: {mode: SIMPLE, credentialName: c, "
     "privateKey: /k.pem}}]", "not both"),
    ("ingress: [{port: {number: 80}, tls: {mode: MUTUAL, serverCertificate: /c.pem, "
     "privateKey: /k.pem}}]", "caCertificates"),
    ("ingress: [{port: {number: 80}, tls: {mode: SIMPLE, credentialNames: [a, b]}}]",
     "several certificates"),
])
def test_what_the_model_refuses(spec: str, says: str) -> None:
    """Istio's Sidecar validation: one listener per port, defaultEndpoint in one of its
    forms, ingress tls SIMPLE or (OPTIONAL_)MUTUAL with one certificate; and a protocol
    no sidecar listener serves here."""
    with pytest.raises(ValidationError, match=says):
        sidecar(spec)


def _tls_objects(secret: bool, mode: str = "DISABLE") -> list[tuple[ObjectKey, dict[str, Any]]]:
    """The Sidecar's port 9999 with tls from credentialName, the port's mTLS ``mode``,
    and (with ``secret``) the Secret it names."""
    out = _objects(True)
    spec = out[1][1]["spec"]
    spec["ingress"][0].update({"defaultEndpoint": "127.0.0.1:8080", "port": {
        "number": 9999, "protocol": "HTTPS"}, "tls": {"mode": "SIMPLE",
                                                      "credentialName": "ratings-cert"}})
    out.append((ObjectKey("security.istio.io", "PeerAuthentication", "prod", "ratings"), {
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "ratings", "namespace": "prod"},
        "spec": {"portLevelMtls": {"9999": {"mode": mode}},
                 "selector": {"matchLabels": {"app": "ratings"}}}}))
    if secret:
        out.append((ObjectKey("", "Secret", "prod", "ratings-cert"), {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "ratings-cert", "namespace": "prod"},
            "stringData": {"tls.crt": "CERT", "tls.key": "KEY"}}))
    return out


def _chain_names(resources: Any, listener: str) -> list[str]:
    return [c.name for c in resources[TYPE_LISTENER][listener].filter_chains]


def test_ingress_tls_terminates_where_mtls_is_disabled_with_its_credential() -> None:
    """Istio's sidecar ingress TLS: one chain with the user's certificate, served over
    SDS from the Secret credentialName names in the workload's namespace; HTTPS is HTTP
    once terminated; the shared build gives the same."""
    snapshot = build_snapshot(1, _tls_objects(True), [POD])
    resources = build_resources(snapshot, NODE)
    assert _chain_names(resources, "inbound_9999") == ["user_tls"]
    assert list(resources[TYPE_SECRET]) == ["kubernetes://ratings-cert"]
    assert "inbound|9999||" in resources[TYPE_ROUTE]  # routed as HTTP after termination
    same_as_reference(ProxyConfigBuilder(), snapshot, NODE)


def test_ingress_tls_fails_closed_without_its_credential() -> None:
    resources = build_resources(build_snapshot(1, _tls_objects(False), [POD]), NODE)
    assert _chain_names(resources, "inbound_9999") == ["user_tls_unavailable"]
    assert TYPE_SECRET not in resources


def test_under_strict_the_port_keeps_the_meshs_mutual_tls() -> None:
    resources = build_resources(build_snapshot(1, _tls_objects(True, "STRICT"), [POD]), NODE)
    assert _chain_names(resources, "inbound_9999") == ["mtls"]
    assert TYPE_SECRET not in resources


def test_the_refused_port_is_the_sidecars_outbound_port() -> None:
    assert SIDECAR_OUTBOUND_PORT == OUTBOUND_PROXY_PORT


def _loop_docs(endpoint: str | None, container_ports: list[int]) -> str:
    listener: dict[str, Any] = {"port": {"number": 9500, "protocol": "HTTP"}}
    if endpoint is not None:
        listener["defaultEndpoint"] = endpoint
    docs = [
        {"apiVersion": f"{NET}/v1", "kind": "Sidecar",
         "metadata": {"name": "ratings", "namespace": "prod"},
         "spec": {"workloadSelector": {"labels": {"app": "ratings"}},
                  "ingress": [listener, {"port": {"number": 9600, "protocol": "HTTP"},
                                         "defaultEndpoint": "127.0.0.1:8080"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "ratings", "namespace": "prod"},
         "spec": {"selector": {"matchLabels": {"app": "ratings"}}, "template": {
             "metadata": {"labels": {"app": "ratings"}},
             "spec": {"containers": [{"name": "app", "image": "ratings", "ports": [
                 {"containerPort": p} for p in container_ports]}]}}}},
    ]
    return yaml.safe_dump_all(docs)


@pytest.mark.parametrize(("endpoint", "ports", "warned"), [
    (None, [8080], True),  # no defaultEndpoint on an undeclared port: to itself
    ("127.0.0.1:9600", [8080], True),  # to another ingress listener
    (None, [9500], False),  # the declared port's app
    ("127.0.0.1:9600", [9600], False),  # declared: the app's port
    ("127.0.0.1:7000", [], False),  # the app listens there itself
    ("unix:///run/x.sock", [], False),
])
def test_a_listener_that_would_loop_is_said_at_apply(endpoint: str | None, ports: list[int],
                                                     warned: bool) -> None:
    """MP2029, naming the workload, where the mesh leaves the listener out."""
    found = plan_apply([("it.yaml", _loop_docs(endpoint, ports))], [])
    hits = [d for d in found.diagnostics if d.code == "MP2029"]
    assert found.ok
    assert bool(hits) is warned, [d.format() for d in found.diagnostics]
    if warned:
        assert "Deployment ratings" in hits[0].message
        assert hits[0].path.startswith("spec.ingress[0]")
    pod = InboundPort(8080, 41000) if 8080 in ports else None
    declared = tuple(InboundPort(p, 41000 + p) for p in ports) if pod is None else (pod,)
    made = {p.container_port for p in inbound_of(
        Sidecar.model_validate(yaml.safe_load_all(_loop_docs(endpoint, ports)).__next__()),
        declared).ports}
    assert (9500 not in made) is warned  # the mesh leaves out exactly what is said


def test_a_tcp_ports_pool_sets_its_tcp_proxys_timeouts() -> None:
    """Istio's tcp_proxy reads the pool's tcp.idleTimeout and tcp.maxConnectionDuration."""
    objects = _objects(True)
    objects[1][1]["spec"]["inboundConnectionPool"] = {
        "tcp": {"idleTimeout": "5s", "maxConnectionDuration": "1h"}}
    resources = build_resources(build_snapshot(1, objects, [POD]), NODE)
    for chain in resources[TYPE_LISTENER]["inbound_7000"].filter_chains:  # type: ignore
        proxy = tcp_proxy_pb2.TcpProxy()
        chain.filters[-1].typed_config.Unpack(proxy)
        assert proxy.idle_timeout.seconds == 5
        assert proxy.max_downstream_connection_duration.seconds == 3600


def _tls_docs(mode: str | None) -> str:
    docs: list[dict[str, Any]] = [
        {"apiVersion": f"{NET}/v1", "kind": "Sidecar",
         "metadata": {"name": "ratings", "namespace": "prod"},
         "spec": {"workloadSelector": {"labels": {"app": "ratings"}},
                  "ingress": [{"port": {"number": 9443, "protocol": "HTTPS"},
                               "defaultEndpoint": "127.0.0.1:8080",
                               "tls": {"mode": "SIMPLE", "credentialName": "cert"}}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "ratings", "namespace": "prod"},
         "spec": {"selector": {"matchLabels": {"app": "ratings"}}, "template": {
             "metadata": {"labels": {"app": "ratings", "version": "v1"}},
             "spec": {"containers": [{"name": "app", "image": "ratings"}]}}}},
    ]
    if mode is not None:
        docs.append({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                     "metadata": {"name": "ratings", "namespace": "prod"},
                     "spec": {"selector": {"matchLabels": {"app": "ratings"}},
                              "portLevelMtls": {"9443": {"mode": mode}}}})
    return yaml.safe_dump_all(docs)


@pytest.mark.parametrize(("mode", "warned"), [(None, True), ("STRICT", True),
                                              ("PERMISSIVE", True), ("DISABLE", False)])
def test_ingress_tls_is_said_where_it_is_not_presented(mode: str | None,
                                                       warned: bool) -> None:
    """MP2028 where the port's mode for a selected workload is not DISABLE (Istio
    presents the user's certificate only there), naming the workload and its mode."""
    found = plan_apply([("it.yaml", _tls_docs(mode))], [])
    hits = [d for d in found.diagnostics if d.code == "MP2028"]
    assert found.ok and bool(hits) is warned, [d.format() for d in found.diagnostics]
    if warned:
        assert hits[0].path == "spec.ingress[0].tls"
        assert f"Deployment ratings ({mode or 'PERMISSIVE'})" in hits[0].message
