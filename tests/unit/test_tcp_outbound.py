"""Where a pod's app finds the TCP and TLS ports of its namespace's Services: local ports
its sidecar listens on, handed out deterministically, and the variables Kubernetes gives
a pod for each Service of its namespace (``{SVC}_SERVICE_HOST``, ``{SVC}_SERVICE_PORT``,
``{SVC}_SERVICE_PORT_{NAME}``, ``{SVC}_PORT``; Kubernetes' "Discovering services")."""

from __future__ import annotations

from meshpilot.mesh.model import MeshService, MeshSnapshot, ServicePort, TcpOutbound
from meshpilot.mesh.tcp_outbound import FIRST_PORT, TcpTarget, allocate, service_env, tcp_targets

ECHO = "tcp-echo.default.svc.cluster.local"
DB = "my-db.default.svc.cluster.local"


def services() -> MeshSnapshot:
    return MeshSnapshot(version=1, endpoints={}, services={
        ECHO: MeshService(ECHO, "tcp-echo", "default", (ServicePort(9000, "tcp", "TCP"),)),
        DB: MeshService(DB, "my-db", "default", (
            ServicePort(8080, "http-admin"), ServicePort(27017, "mongo", "TCP"),
            ServicePort(6379, "", "TCP"))),
        "web.default.svc.cluster.local": MeshService(
            "web.default.svc.cluster.local", "web", "default", (ServicePort(80, "http"),)),
        "db.shop.svc.cluster.local": MeshService(
            "db.shop.svc.cluster.local", "db", "shop", (ServicePort(5432, "tcp", "TCP"),)),
        "api.example.com": MeshService("api.example.com", "api.example.com", "default",
                                       (ServicePort(443, "tls", "TLS"),),
                                       origin="ServiceEntry"),
    })


def test_only_opaque_ports_of_services_are_targets_in_a_stable_order() -> None:
    """Services first (by namespace, name, port), then ServiceEntry hosts (by host)."""
    targets = tcp_targets(services())
    assert [(t.namespace, t.service, t.port, t.entry) for t in targets] == [
        ("default", "my-db", 6379, False), ("default", "my-db", 27017, False),
        ("default", "tcp-echo", 9000, False), ("shop", "db", 5432, False),
        ("default", "api.example.com", 443, True)]


def test_ports_are_handed_out_in_order_skipping_the_pod_s_own() -> None:
    targets = tcp_targets(services())
    got = allocate(targets, "default", [FIRST_PORT + 1, 15001])
    assert got == (TcpOutbound(DB, 6379, FIRST_PORT), TcpOutbound(DB, 27017, FIRST_PORT + 2),
                   TcpOutbound(ECHO, 9000, FIRST_PORT + 3),
                   TcpOutbound("api.example.com", 443, FIRST_PORT + 4))
    assert allocate(reversed(targets), "default", [FIRST_PORT + 1]) == got  # deterministic
    # the entry (exported everywhere) is reached from every namespace, after its Services
    assert allocate(targets, "shop", []) == (
        TcpOutbound("db.shop.svc.cluster.local", 5432, FIRST_PORT),
        TcpOutbound("api.example.com", 443, FIRST_PORT + 1))


def test_too_many_services_get_no_port_past_the_range() -> None:
    many = [TcpTarget("default", f"s{i:04d}", f"s{i:04d}.default.svc.cluster.local", 1)
            for i in range(1000)]
    got = allocate(many, "default", [])
    assert len(got) == 900 and got[-1].local_port == 15999


def test_the_app_gets_kubernetes_service_variables_pointing_at_its_sidecar() -> None:
    targets = tcp_targets(services())
    env = service_env(targets, allocate(targets, "default", []), "127.10.0.7")
    assert env == {
        "MY_DB_SERVICE_HOST": "127.10.0.7",
        "MY_DB_SERVICE_PORT": str(FIRST_PORT),  # its first TCP port (6379, unnamed)
        "MY_DB_PORT": f"tcp://127.10.0.7:{FIRST_PORT}",
        "MY_DB_SERVICE_PORT_MONGO": str(FIRST_PORT + 1),
        "TCP_ECHO_SERVICE_HOST": "127.10.0.7",
        "TCP_ECHO_SERVICE_PORT": str(FIRST_PORT + 2),
        "TCP_ECHO_PORT": f"tcp://127.10.0.7:{FIRST_PORT + 2}",
        "TCP_ECHO_SERVICE_PORT_TCP": str(FIRST_PORT + 2),
        # a ServiceEntry host: named after the host as written
        "API_EXAMPLE_COM_SERVICE_HOST": "127.10.0.7",
        "API_EXAMPLE_COM_SERVICE_PORT": str(FIRST_PORT + 3),
        "API_EXAMPLE_COM_PORT": f"tcp://127.10.0.7:{FIRST_PORT + 3}",
        "API_EXAMPLE_COM_SERVICE_PORT_TLS": str(FIRST_PORT + 3),
    }


def entry(host: str, *ports: ServicePort, export_to: tuple[str, ...] = (),
          resolution: str = "DNS", namespace: str = "egress") -> MeshService:
    return MeshService(host, host, namespace, ports, origin="ServiceEntry",
                       resolution=resolution, export_to=export_to)  # type: ignore[arg-type]


def test_entries_follow_export_to_and_never_move_a_service_s_port() -> None:
    """Istio's exportTo: ``.`` keeps an entry to its own namespace, names list others."""
    mongo = entry("mongo.example.com", ServicePort(27017, "mongo", "TCP"), export_to=(".",))
    shared = entry("db.example.com", ServicePort(5432, "tcp", "TCP"), export_to=("shop",))
    snap = MeshSnapshot(version=1, endpoints={}, services={
        **services().services, mongo.host: mongo, shared.host: shared})
    targets = tcp_targets(snap)
    assert allocate(targets, "egress", []) == (
        TcpOutbound("api.example.com", 443, FIRST_PORT),
        TcpOutbound(mongo.host, 27017, FIRST_PORT + 1))
    assert mongo.host not in {o.host for o in allocate(targets, "shop", [])}
    before = allocate(tcp_targets(services()), "shop", [])
    after = allocate(targets, "shop", [])
    assert after[:len(before)] == before  # the Service keeps its port
    assert after[len(before):] == (TcpOutbound(shared.host, 5432, FIRST_PORT + 2),)


def test_a_wildcard_entry_resolved_none_is_reached_on_its_tls_ports_only() -> None:
    """Istio's "Egress using Wildcard Hosts": ``*.wikipedia.org`` resolved NONE on an
    HTTPS port. Its TLS port names the host by SNI; its plain TCP port names none."""
    wild = entry("*.wiki.test", ServicePort(443, "https", "HTTPS"),
                 ServicePort(9000, "tcp", "TCP"), resolution="NONE")
    snap = MeshSnapshot(version=1, endpoints={}, services={wild.host: wild})
    targets = tcp_targets(snap)
    assert [(t.host, t.port) for t in targets] == [("*.wiki.test", 443)]
    env = service_env(targets, allocate(targets, "default", []), "127.10.0.7")
    assert env["WILDCARD_WIKI_TEST_SERVICE_PORT_HTTPS"] == str(FIRST_PORT)
    assert env["WILDCARD_WIKI_TEST_SERVICE_HOST"] == "127.10.0.7"
