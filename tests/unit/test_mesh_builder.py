"""The mesh view: Services, ServiceEntries and WorkloadEntries become hosts and endpoints."""

from __future__ import annotations

from typing import Any

from tests.builders import keyed

from meshpilot.mesh.builder import SnapshotBuilder, build_snapshot
from meshpilot.mesh.model import InboundPort, WorkloadInstance
from meshpilot.mesh.protocols import port_protocol

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: myapp}
spec:
  selector: {app: myapp}
  ports:
  - {name: http, port: 8080, targetPort: http}
  - {name: grpc-api, port: 9090, targetPort: 9091}
"""


def pod(name: str, ip: str, version: str, ready: bool = True, ns: str = "default") -> Any:
    return WorkloadInstance(
        name=name, namespace=ns, ip=ip, labels={"app": "myapp", "version": version},
        ports=(InboundPort(8080, 31000, "http"), InboundPort(9091, 31001, "grpc")), ready=ready,
    )


def test_service_endpoints_follow_selector_and_named_target_ports() -> None:
    snap = build_snapshot(7, keyed(SERVICE), [
        pod("a", "127.10.0.2", "v1"), pod("b", "127.10.0.3", "v2", ready=False),
        pod("c", "127.10.0.4", "v1", ns="other"),
    ])
    host = "myapp.default.svc.cluster.local"
    assert snap.version == 7
    svc = snap.services[host]
    assert [(p.port, p.protocol) for p in svc.ports] == [(8080, "HTTP"), (9090, "GRPC")]
    eps = snap.endpoints[host]
    assert {(e.address, e.port, e.service_port, e.ready) for e in eps} == {
        ("127.10.0.2", 8080, 8080, True), ("127.10.0.3", 8080, 8080, False),
        ("127.10.0.2", 9091, 9090, True), ("127.10.0.3", 9091, 9090, False),
    }
    assert all(e.workload != "c" for e in eps)  # other namespace is not selected


def test_workload_entry_behind_a_service_is_reached_directly() -> None:
    snap = build_snapshot(1, keyed(SERVICE.replace("targetPort: http", "targetPort: 8080") + """
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: legacy}
spec:
  address: 127.0.0.1
  ports: {http: 9000}
  labels: {app: myapp, version: v0}
"""))
    eps = [e for e in snap.endpoints["myapp.default.svc.cluster.local"] if e.service_port == 8080]
    assert [(e.address, e.port, e.workload) for e in eps] == [("127.0.0.1", 9000, "legacy")]


def test_service_entry_static_endpoints_and_dns() -> None:
    snap = build_snapshot(1, keyed("""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 18080}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns}
spec:
  hosts: [localhost.example]
  resolution: DNS
  ports: [{number: 8000, name: http}]
"""))
    ext = snap.services["api.example.com"]
    assert ext.origin == "ServiceEntry" and ext.resolution == "EDS"
    assert [(e.address, e.port) for e in snap.endpoints["api.example.com"]] == [
        ("127.0.0.1", 18080)]
    assert snap.services["localhost.example"].resolution == "DNS"
    assert [(e.address, e.port) for e in snap.endpoints["localhost.example"]] == [
        ("localhost.example", 8000)]


def test_resolution_none_with_one_address_passes_through_to_that_address() -> None:
    """Istio's resolution NONE sends a connection to the address the client connected
    to (its "Consuming External TCP Services" entries give a single address). With one
    address that can only be it; with a block, several, or a wildcard host, not."""
    def entry(name: str, hosts: str, addresses: str) -> str:
        return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: {hosts}
  addresses: {addresses}
  resolution: NONE
  ports: [{{number: 27017, name: mongo, protocol: MONGO}}]
"""
    snap = build_snapshot(1, keyed("---".join([
        entry("one", "[my-mongo.tcp.svc]", "[203.0.113.4/32]"),
        entry("block", "[block.tcp.svc]", "[203.0.113.0/24]"),
        entry("two", "[two.tcp.svc]", "[203.0.113.5, 203.0.113.6]"),
        entry("wild", "['*.wild.test']", "[203.0.113.7]")])))
    assert snap.services["my-mongo.tcp.svc"].resolution == "EDS"
    assert [(e.address, e.port) for e in snap.endpoints["my-mongo.tcp.svc"]] == [
        ("203.0.113.4", 27017)]
    for host in ("block.tcp.svc", "two.tcp.svc", "*.wild.test"):
        assert snap.services[host].resolution == "NONE", host
        assert snap.endpoints[host] == (), host


def test_rules_are_parsed_into_the_snapshot() -> None:
    snap = build_snapshot(3, keyed(SERVICE + """
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: myapp}
spec:
  hosts: [myapp]
  http: [{route: [{destination: {host: myapp}}]}]
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: myapp}
spec: {host: myapp, subsets: [{name: v1, labels: {version: v1}}]}
"""))
    assert [v.name for v in snap.virtual_services] == ["myapp"]
    assert snap.destination_rules[0].obj.spec.subsets[0].name == "v1"


def test_port_protocol_follows_istio_naming() -> None:
    assert port_protocol("http-web") == "HTTP"
    assert port_protocol("grpc") == "GRPC"
    assert port_protocol("tcp-db") == "TCP"
    assert port_protocol("web", "http2") == "HTTP2"
    assert port_protocol(None) == "HTTP"


OTHER = SERVICE.replace("myapp", "other")


def test_a_rebuild_keeps_the_objects_of_what_did_not_change() -> None:
    """Equal inputs give equal snapshots, and unchanged services, endpoints and rules are
    the very same objects (the xDS build tells "unchanged" by identity)."""
    builder = SnapshotBuilder()

    def build(version: int, ip: str) -> Any:
        pods = [pod("a", "127.10.0.2", "v1"), pod("b", ip, "v2"),
                WorkloadInstance(name="o", namespace="default", ip="127.10.0.9",
                                 labels={"app": "other"}, ports=(InboundPort(8080, 1),))]
        return builder.build(version, keyed(SERVICE + "---" + OTHER), pods)

    first = build(1, "127.10.0.3")
    again = build(2, "127.10.0.3")  # new dicts and instances, same content
    mine, other = "myapp.default.svc.cluster.local", "other.default.svc.cluster.local"
    for host in (mine, other):
        assert again.services[host] is first.services[host]
        assert again.endpoints[host] is first.endpoints[host]
    moved = build(3, "127.10.0.7")  # pod b moved: only myapp's endpoints change
    assert moved.endpoints[other] is first.endpoints[other]
    assert moved.endpoints[mine] is not first.endpoints[mine]
    assert {e.address for e in moved.endpoints[mine]} == {"127.10.0.2", "127.10.0.7"}
    assert moved.services[mine] == first.services[mine]


def test_an_equal_body_with_another_resource_version_is_parsed_again() -> None:
    docs = keyed(SERVICE)
    (key, body), = docs
    one = build_snapshot(1, [(key, {**body, "metadata": {**body["metadata"],
                                                          "resourceVersion": "5"}})])
    changed = {**body, "metadata": {**body["metadata"], "resourceVersion": "6"},
               "spec": {**body["spec"], "ports": [{"name": "http", "port": 8081}]}}
    two = build_snapshot(2, [(key, changed)])
    host = "myapp.default.svc.cluster.local"
    assert [p.port for p in one.services[host].ports] == [8080, 9090]
    assert [p.port for p in two.services[host].ports] == [8081]


TLS_SECRET = """
apiVersion: v1
kind: Secret
metadata: {name: shop-cert, namespace: istio-system}
type: kubernetes.io/tls
stringData: {tls.crt: CERT, tls.key: KEY}
---
apiVersion: v1
kind: Secret
metadata: {name: db-password}
stringData: {password: hunter2}
"""


def test_secrets_are_in_the_snapshot_and_keep_their_identity() -> None:
    """A gateway serves the certificate of the Secret its Gateway names, so the snapshot
    carries the stored Secrets; an unchanged one is the very same object next time."""
    builder = SnapshotBuilder()
    first = builder.build(1, keyed(SERVICE + "---" + TLS_SECRET))
    assert [(s.namespace, s.name, s.obj.type) for s in first.secrets] == [
        ("istio-system", "shop-cert", "kubernetes.io/tls"), ("default", "db-password", "Opaque")]
    assert first.secrets[0].obj.value("tls.crt") == b"CERT"
    again = builder.build(2, keyed(SERVICE + "---" + TLS_SECRET))
    assert again.secrets is first.secrets
    changed = builder.build(3, keyed(SERVICE + "---" + TLS_SECRET.replace("hunter2", "x")))
    assert changed.secrets[0] is first.secrets[0]
    assert changed.secrets[1] is not first.secrets[1]


def test_a_stored_secret_that_no_longer_parses_is_skipped_without_its_value(
        caplog: Any) -> None:
    (key, body), = keyed(TLS_SECRET.split("---")[1])
    body = {**body, "data": {"password": "not base64 hunter2!"}}
    del body["stringData"]
    snap = build_snapshot(1, [(key, body)])
    assert snap.secrets == ()
    assert "db-password" in caplog.text
    assert "hunter2" not in caplog.text


def test_neither_a_secret_nor_the_snapshot_holding_it_shows_values_when_printed() -> None:
    snap = build_snapshot(1, keyed(TLS_SECRET))
    assert snap.secrets[1].obj.value("password") == b"hunter2"
    for text in (repr(snap), repr(snap.secrets), str(snap.secrets[1].obj)):
        assert "hunter2" not in text and "KEY" not in text
    assert "password" in repr(snap.secrets[1].obj)  # the keys are shown, not the values
