"""Egress end to end, after Istio's task "Accessing External Services": with the mesh's
``outboundTrafficPolicy`` ALLOW_ANY (the default) a host outside the registry is passed
through to the host the request names and counted as PassthroughCluster; with
REGISTRY_ONLY (the mesh config file ``up`` reads) it gets 502 from BlackHoleCluster until
a ServiceEntry registers it; a Sidecar with ``outboundTrafficPolicy`` closes the
workloads it selects only. The "external" server is a demo app on loopback named
``external.test``, which a DNS responder on loopback resolves (so nothing leaves the
machine).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ControlPlane, run_cli, wait_for
from tests.dns_responder import DnsResponder
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, When
from tests.e2e.security import (
    as_pod,
    requests_counted,
    sidecar_proxy,
    wait_counted,
    workload,
)
from tests.https_backend import HttpsBackend, https_backend

EXTERNAL = "external.test"
CLOSE_SLEEP = """\
    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {name: sleep, namespace: default}
    spec:
      workloadSelector: {labels: {app: sleep}}
      outboundTrafficPolicy: {mode: REGISTRY_ONLY}
    """


@pytest.fixture
def dns() -> Iterator[DnsResponder]:
    with DnsResponder({EXTERNAL: "127.0.0.1"}) as responder:
        yield responder


def _mesh(factory: Callable[..., ControlPlane], dns: DnsResponder, mode: str) -> Mesh:
    cp = factory(f"egress-{mode.lower()}", start=False)
    cp.state_dir.mkdir(parents=True)
    (cp.state_dir / "mesh.yaml").write_text(
        f"outboundTrafficPolicy:\n  mode: {mode}\ndnsResolvers: [\"{dns.address}\"]\n")
    return Mesh(cp.start())


def log_line(mesh: Mesh, request_id: str) -> str:
    """The line of ``request_id`` in the sleep pod's proxy log (``meshpilot logs``)."""
    (pod,) = mesh.pods_of("sleep")

    def found() -> str | None:
        done = run_cli("logs", pod["metadata"]["name"], "--proxy", state_dir=mesh.cp.state_dir)
        assert done.returncode == 0, done.stderr
        return next((line for line in done.stdout.splitlines() if request_id in line), None)
    return str(wait_for(found, 10, interval=0.3, message=f"the line of {request_id}"))


def _entry(port: int) -> str:
    return f"""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: external}}
        spec:
          hosts: [{EXTERNAL}]
          location: MESH_EXTERNAL
          resolution: STATIC
          ports: [{{number: 80, name: http, protocol: HTTP}}]
          endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
        """


def test_allow_any_passes_through_and_a_sidecar_closes_one_workload(
    control_plane_factory: Callable[..., ControlPlane], dns: DnsResponder,
    backend_app: Callable[..., str],
) -> None:
    mesh = _mesh(control_plane_factory, dns, "ALLOW_ANY")
    try:
        given, when = Given(mesh), When(mesh)
        port = int(backend_app("ext").rsplit(":", 1)[1])
        url = f"http://{EXTERNAL}:{port}/"
        given.applied(*workload("sleep", "default"))

        # "Envoy passthrough to external services": reached as named, nothing registered;
        # a client cannot steer it elsewhere with the header the sidecar keeps the host in,
        # and that header does not reach the external server
        r = mesh.http.get(url, headers={"x-meshpilot-authority": "127.0.0.1:1"})
        assert r.status_code == 200, r.text
        assert r.headers["x-version"] == "ext" and r.json()["host"] == f"{EXTERNAL}:{port}"
        assert "x-meshpilot-authority" not in r.json()["headers"]
        assert EXTERNAL in dns.asked
        wait_counted(mesh, 1, destination_service_name="PassthroughCluster",
                     response_code="200", reporter="source")
        with as_pod(mesh, "default", "sleep") as sleep:
            assert sleep.get(url).status_code == 200

        # When a Sidecar closes the sleep workload only
        when.apply(CLOSE_SLEEP)
        with as_pod(mesh, "default", "sleep") as sleep:
            refused = sleep.get(url, headers={"x-request-id": "blackholed-request"})
        # Then sleep gets BlackHoleCluster's 502, and the mesh's other clients pass through
        assert refused.status_code == 502 and "BlackHoleCluster" in refused.text
        # its sidecar's access log line names the host sleep asked for, and the cluster
        line = log_line(mesh, "blackholed-request")
        assert f'"{EXTERNAL}:{port}"' in line and " BlackHoleCluster " in line, line
        assert "outbound-traffic-policy" not in line
        assert mesh.http.get(url).status_code == 200
        (pod,) = mesh.pods_of("sleep")
        described = run_cli("describe", "pod", pod["metadata"]["name"],
                            state_dir=mesh.cp.state_dir)
        assert "REGISTRY_ONLY (Sidecar default/sleep)" in described.stdout, described
        assert wait_counted(mesh, 1, destination_service_name="BlackHoleCluster",
                            response_code="502", source_workload="sleep") >= 1
    finally:
        mesh.close()


def test_registry_only_blackholes_until_a_service_entry_registers_the_host(
    control_plane_factory: Callable[..., ControlPlane], dns: DnsResponder,
    backend_app: Callable[..., str],
) -> None:
    mesh = _mesh(control_plane_factory, dns, "REGISTRY_ONLY")
    try:
        port = int(backend_app("ext").rsplit(":", 1)[1])
        # "Change to the blocking-by-default policy": the host is refused, never looked up
        refused = mesh.http.get(f"http://{EXTERNAL}:{port}/")
        assert refused.status_code == 502, refused.text
        assert "BlackHoleCluster" in refused.text and EXTERNAL not in dns.asked
        wait_counted(mesh, 1, destination_service_name="BlackHoleCluster",
                     response_code="502", reporter="source")
        assert requests_counted(mesh, destination_service_name="PassthroughCluster") == 0

        # "Access an external HTTP service": a ServiceEntry makes it reachable again
        Given(mesh).applied(_entry(port))
        r = mesh.http.get(f"http://{EXTERNAL}/")
        assert r.status_code == 200, r.text
        assert r.headers["x-version"] == "ext"
    finally:
        mesh.close()


def _https_entry(port: int) -> str:
    """istio.io's HTTPS ServiceEntry (port 443, protocol HTTPS), its address the test's
    server on loopback instead of what DNS says."""
    return f"""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {{name: external-https}}
        spec:
          hosts: [{EXTERNAL}]
          location: MESH_EXTERNAL
          resolution: STATIC
          ports: [{{number: 443, name: https, protocol: HTTPS}}]
          endpoints: [{{address: 127.0.0.1, ports: {{https: {port}}}}}]
        """


def _curl(proxy: str, backend: HttpsBackend, url: str) -> subprocess.CompletedProcess[str]:
    """``curl`` as the task's sleep pod runs it, its ``HTTPS_PROXY`` being its sidecar:
    CONNECT through the proxy, then TLS to the host, verified against the test's root."""
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--proxy", proxy, "--cacert", str(backend.root),
         url], capture_output=True, text=True, timeout=20, check=False)


def test_https_through_the_sidecar_passes_through_is_refused_then_goes_to_the_entry(
    control_plane_factory: Callable[..., ControlPlane], dns: DnsResponder, tmp_path: Path,
) -> None:
    """istio.io "Accessing External Services", its HTTPS steps: with ALLOW_ANY the sleep
    pod's ``curl https://...`` through its sidecar reaches the external server and is
    counted as PassthroughCluster; closed (REGISTRY_ONLY, here by a Sidecar) the tunnel
    is refused through BlackHoleCluster; "Access an external HTTPS service": a
    ServiceEntry with an HTTPS port 443 opens it again, to the entry's endpoint, counted
    as that service; "Egress TLS Origination": the entry's HTTP port 80 with a
    DestinationRule's SIMPLE TLS lets the app call ``http://`` while the sidecar speaks
    TLS to the server (which would refuse plaintext)."""
    mesh = _mesh(control_plane_factory, dns, "ALLOW_ANY")
    try:
        with https_backend(EXTERNAL, tmp_path) as backend:
            Given(mesh).applied(*workload("sleep", "default"))
            proxy = sidecar_proxy(mesh, "default", "sleep")
            passed = _curl(proxy, backend, f"https://{EXTERNAL}:{backend.port}/headers")
            assert passed.returncode == 0, passed.stderr
            assert json.loads(passed.stdout)["path"] == "/headers"
            wait_counted(mesh, 1, destination_service_name="PassthroughCluster",
                         source_workload="sleep", reporter="source")

            When(mesh).apply(CLOSE_SLEEP)
            refused = _curl(proxy, backend, f"https://{EXTERNAL}:{backend.port}/headers")
            assert refused.returncode != 0 and "502" in refused.stderr, refused.stderr
            wait_counted(mesh, 1, destination_service_name="BlackHoleCluster",
                         source_workload="sleep", response_code="502")

            When(mesh).apply(_https_entry(backend.port))
            entry = _curl(proxy, backend, f"https://{EXTERNAL}/entry")
            assert entry.returncode == 0, entry.stderr
            assert json.loads(entry.stdout)["path"] == "/entry"
            wait_counted(mesh, 1, destination_service=EXTERNAL, source_workload="sleep",
                         reporter="source", response_code="200")

            # "Egress TLS Origination": the app asks for http://, the sidecar speaks TLS
            When(mesh).apply(*_originating_entry(backend))
            with as_pod(mesh, "default", "sleep") as sleep:
                originated = sleep.get(f"http://{EXTERNAL}/origin")
            assert originated.status_code == 200, originated.text
            assert originated.json()["path"] == "/origin"
    finally:
        mesh.close()


def _originating_entry(backend: HttpsBackend) -> tuple[str, str]:
    """istio.io "Egress TLS Origination": port 80 (HTTP) of the entry reaches the
    server's TLS port, and a DestinationRule makes the sidecar originate TLS there
    (SIMPLE, verifying the server against the test's root, SNI the host)."""
    entry = _https_entry(backend.port).replace(
        "ports: [{number: 443, name: https, protocol: HTTPS}]",
        "ports: [{number: 80, name: http, protocol: HTTP}, "
        "{number: 443, name: https, protocol: HTTPS}]").replace(
        "ports: {https: ", f"ports: {{http: {backend.port}, https: ")
    rule = f"""\
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {{name: originate-tls}}
        spec:
          host: {EXTERNAL}
          trafficPolicy:
            portLevelSettings:
            - port: {{number: 80}}
              tls: {{mode: SIMPLE, sni: {EXTERNAL}, caCertificates: {backend.root}}}
        """
    return entry, rule
