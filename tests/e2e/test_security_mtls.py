"""Mutual TLS end to end, as Istio does it by default: real Envoy sidecars, certificates
from the control plane's CA over SDS, auto mTLS between sidecars, each inbound port
following its PeerAuthentication mode; the real ``openssl s_client`` looks at what a pod
presents. Istio's pages followed: "Mutual TLS Migration", "PeerAuthentication",
"Istio CA certificate" (workload certificate rotation).

The scene, after Istio's tasks: namespace ``foo`` with ``httpbin`` (service account
``httpbin``) and ``sleep`` (service account ``sleep``); in-mesh clients are the mesh proxy
(``cluster.local/ns/default/sa/default``) and ``sleep``'s sidecar; the client outside the
mesh sends plaintext straight to ``httpbin``'s pod address.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.builders import destination_rule
from tests.conftest import ControlPlane
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, Then, When
from tests.e2e.security import (
    Issuer,
    applied,
    as_pod,
    direct,
    peer_authentication,
    pod,
    pod_address,
    s_client,
    sidecar_proxy,
    status,
    url,
    wait_counted,
    workload,
    workload_serials,
)

FOO = "foo"
HTTPBIN = url("httpbin", FOO)
SCENE = (*workload("httpbin", FOO, service_account="httpbin"),
         *workload("sleep", FOO, service_account="sleep"))
HTTPBIN_ID = "spiffe://cluster.local/ns/foo/sa/httpbin"
SLEEP_ID = "spiffe://cluster.local/ns/foo/sa/sleep"
MESH_PROXY_ID = "spiffe://cluster.local/ns/default/sa/default"
PLAINTEXT_REFUSED = {"RemoteProtocolError", "ReadError", "ConnectError", "ReadTimeout"}


def _from_outside(mesh: Mesh, n: int = 5) -> list[str]:
    """``n`` plaintext requests straight to httpbin's pod, each on a new connection."""
    out = []
    for _ in range(n):
        with direct(mesh, FOO, "httpbin") as client:
            out.append(status(client, "/"))
    return out


def _from_the_mesh(mesh: Mesh, n: int = 5) -> list[str]:
    """``n`` requests to httpbin from the mesh proxy and ``n`` from sleep's sidecar."""
    with as_pod(mesh, FOO, "sleep") as sleep:
        return ([status(mesh.http, HTTPBIN) for _ in range(n)]
                + [status(sleep, HTTPBIN) for _ in range(n)])


def _caller_seen_by_app(mesh: Mesh) -> str | None:
    """The caller identity httpbin's app was told by its sidecar (None: not told)."""
    r = mesh.http.get(HTTPBIN)
    assert r.status_code == 200, r.text
    return r.json()["headers"].get("x-meshpilot-peer-principal")


def test_strict_refuses_plaintext_and_serves_mesh_clients_over_mtls(
        mesh: Mesh, given: Given) -> None:
    """Istio, PeerAuthentication STRICT ("Mutual TLS Migration", lock down to mutual TLS
    by namespace): a client without a sidecar is refused (its plaintext connection is
    reset); sidecar clients keep working over mutual TLS, and the server's telemetry
    reports ``connection_security_policy="mutual_tls"`` with each caller's principal."""
    given.applied(*SCENE, peer_authentication(FOO, "STRICT"))

    outside = _from_outside(mesh)
    assert set(outside) <= PLAINTEXT_REFUSED, outside
    assert _from_the_mesh(mesh) == ["200"] * 10
    assert _caller_seen_by_app(mesh) == MESH_PROXY_ID

    for principal in (MESH_PROXY_ID, SLEEP_ID):
        assert wait_counted(mesh, 5, reporter="destination", destination_workload="httpbin",
                            source_principal=principal, response_code="200",
                            connection_security_policy="mutual_tls") >= 5
    assert wait_counted(mesh, 0, reporter="destination", destination_workload="httpbin",
                        connection_security_policy="none") == 0


def test_permissive_serves_mtls_and_plaintext(mesh: Mesh, given: Given) -> None:
    """Istio's default, PERMISSIVE (no PeerAuthentication at all): the same port takes
    mutual TLS from sidecars and plaintext from clients outside the mesh; the server
    reports the first as ``mutual_tls`` and the second as ``none`` from an unknown
    source."""
    given.applied(*SCENE)

    assert _from_outside(mesh) == ["200"] * 5
    assert _from_the_mesh(mesh) == ["200"] * 10
    assert _caller_seen_by_app(mesh) == MESH_PROXY_ID

    assert wait_counted(mesh, 5, reporter="destination", destination_workload="httpbin",
                        source_principal=MESH_PROXY_ID,
                        connection_security_policy="mutual_tls") >= 5
    assert wait_counted(mesh, 5, reporter="destination", destination_workload="httpbin",
                        source_workload="unknown", source_principal="unknown",
                        connection_security_policy="none") == 5


def test_disable_serves_plaintext_and_mesh_clients_fall_back_to_it(
        mesh: Mesh, given: Given, tmp_path: Path) -> None:
    """Istio, PeerAuthentication DISABLE: the port serves plaintext only, and auto mTLS
    sends plaintext to it, so sidecar clients still reach it (reported as
    ``connection_security_policy="none"``); a TLS client finds no TLS there."""
    given.applied(*SCENE, peer_authentication(FOO, "DISABLE"))

    assert _from_outside(mesh) == ["200"] * 5
    assert _from_the_mesh(mesh) == ["200"] * 10
    assert _caller_seen_by_app(mesh) is None  # no certificate, so nobody is named

    assert wait_counted(mesh, 10, reporter="destination", destination_workload="httpbin",
                        connection_security_policy="none") >= 10
    assert wait_counted(mesh, 0, reporter="destination", destination_workload="httpbin",
                        connection_security_policy="mutual_tls") == 0
    handshake = s_client(pod_address(mesh, FOO, "httpbin"),
                         ca_file=mesh.cp.state_dir / "ca" / "root-cert.pem")
    assert handshake.returncode != 0 and not handshake.answered, handshake


def test_switching_a_namespace_from_permissive_to_strict_drops_no_request(
        mesh: Mesh, given: Given, when: When, then: Then) -> None:
    """Istio's "Mutual TLS Migration": sidecar clients already speak mutual TLS under
    PERMISSIVE, so locking the namespace down to STRICT while they send requests fails
    none of them; only the client outside the mesh loses access."""
    given.applied(*SCENE, peer_authentication(FOO, "PERMISSIVE"))
    assert _from_outside(mesh, 2) == ["200"] * 2

    via = [mesh.mesh_proxy, sidecar_proxy(mesh, FOO, "sleep")]
    with when.traffic(HTTPBIN, via=via, workers=2, rate=80, max_seconds=40) as load:
        load.wait_for_requests(100)
        applied(mesh, peer_authentication(FOO, "STRICT"))
        load.wait_for_requests(150)
    then.no_request_failed(load, more_than=250)
    outside = _from_outside(mesh)
    assert set(outside) <= PLAINTEXT_REFUSED, outside


def test_openssl_sees_the_workload_certificate_and_needs_a_mesh_client_certificate(
        mesh: Mesh, given: Given, tmp_path: Path) -> None:
    """What ``openssl s_client -connect POD_IP:PORT -alpn istio`` shows of a STRICT port,
    as in Istio: the workload certificate, whose URI SAN is the pod's SPIFFE ID
    ``spiffe://cluster.local/ns/<ns>/sa/<service account>``, issued by the mesh CA; the
    handshake fails without a client certificate and with one from another CA; a client
    certificate from the mesh CA gets an answer."""
    given.applied(*SCENE, peer_authentication(FOO, "STRICT"))
    ca_dir = mesh.cp.state_dir / "ca"
    root = ca_dir / "root-cert.pem"
    address = pod_address(mesh, FOO, "httpbin")

    bare = s_client(address, ca_file=root)
    assert bare.verified, bare.stdout
    cert = bare.server_certificate
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [HTTPBIN_ID]
    mesh_ca = Issuer.load(ca_dir)
    assert cert.issuer == mesh_ca.cert.subject
    cert.verify_directly_issued_by(mesh_ca.cert)  # raises unless the mesh CA signed it
    assert bare.returncode != 0 and not bare.answered, bare
    assert "certificate required" in bare.stderr, bare.stderr

    stranger = Issuer.self_signed("another CA")
    forged = s_client(address, ca_file=root,
                      cert=stranger.workload_cert(SLEEP_ID, tmp_path / "stranger"))
    assert forged.returncode != 0 and not forged.answered, forged
    assert "unknown ca" in forged.stderr, forged.stderr

    member = s_client(address, ca_file=root,
                      cert=mesh_ca.workload_cert(SLEEP_ID, tmp_path / "member"))
    assert member.answered and "HTTP/1.1 200" in member.stdout, member


@pytest.fixture
def short_lived_mesh(control_plane_factory: Callable[..., ControlPlane]) -> Iterator[Mesh]:
    """A mesh whose workload certificates live 4 s (renewed after about 2 s)."""
    m = Mesh(control_plane_factory("mesh", args=("--cert-ttl", "4s")))
    try:
        yield m
    finally:
        m.close()


@pytest.mark.timeout(180)
def test_certificates_rotate_under_load_without_a_failed_request(
        short_lived_mesh: Mesh) -> None:
    """Istio rotates each workload certificate when about half its lifetime is left, and
    connections go on: with a 4 s lifetime and mutual TLS required (STRICT), 12 s of
    requests from the mesh proxy and from a pod's sidecar all succeed while the server's
    and the client's certificates (Envoy admin ``/certs``) are replaced several times.
    Each request opens a connection of its own (``maxRequestsPerConnection: 1``), so the
    handshakes go on with the renewed certificates, not only on kept-open connections."""
    mesh = short_lived_mesh
    given, when, then = Given(mesh), When(mesh), Then(mesh)
    given.applied(*SCENE, peer_authentication(FOO, "STRICT"), destination_rule(
        "httpbin.foo.svc.cluster.local", namespace=FOO, traffic_policy={
            "connectionPool": {"http": {"maxRequestsPerConnection": 1}}}))
    admins = {app: pod(mesh, FOO, app)["status"]["sidecarAdminSocket"]
              for app in ("httpbin", "sleep")}
    seen: dict[str, list[set[str]]] = {app: [] for app in admins}

    via = [mesh.mesh_proxy, sidecar_proxy(mesh, FOO, "sleep")]
    with when.traffic(HTTPBIN, via=via, workers=2, rate=40, max_seconds=12) as load:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            for app, admin in admins.items():
                seen[app].append(workload_serials(admin))
            time.sleep(0.5)
    then.no_request_failed(load, more_than=240)
    for app, readings in seen.items():
        serials = set().union(*readings)
        assert len(serials) >= 3, (app, readings)  # the first and two renewals at least
