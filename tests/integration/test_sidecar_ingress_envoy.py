"""A Sidecar's ``ingress`` listeners against a real Envoy, with real requests: the
resources :func:`build_resources` makes for a pod's sidecar under the Sidecar, run in a
static bootstrap (RDS inlined, SDS given as static secrets), in front of real apps.

Follows Istio's Sidecar reference page: "an ingress listener on port 9080 forwarding to
127.0.0.1:8080" (the app listens on a port no container declares), "forwarding to a unix
domain socket", a TCP ingress listener, and ``inboundConnectionPool`` as circuit breakers
on the inbound cluster (a listener's own pool replacing it, its idle timeout closing
silent TCP connections). The inbound side's security stays: a DENY AuthorizationPolicy
answers 403 through the ingress listener, and a port-level STRICT PeerAuthentication on
an ingress port refuses plaintext and admits mutual TLS with a mesh certificate.
Istio's sidecar ingress TLS: on a port whose mode is DISABLE the listener terminates TLS
with the user's certificate (SIMPLE from files; MUTUAL from a ``credentialName`` Secret,
refusing a client without a certificate); where the mode is STRICT the mesh's mutual
TLS is what the port speaks, as in Istio.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from tests import tls_pairs
from tests.integration.echo_app import EchoHandler, echo_server, serve
from tests.integration.security_envoy import (
    Workload,
    as_dict,
    issue,
    static_secret_refs,
    workload_secrets,
)
from tests.tls_pairs import b64, pem

from meshpilot.api.credentials import Secret
from meshpilot.api.networking import Sidecar
from meshpilot.api.security import AuthorizationPolicy, PeerAuthentication
from meshpilot.mesh.model import InboundPort, MeshSnapshot, Named, ProxyNode
from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import free_port, wait_port
from meshpilot.security import load_or_create_self_signed_ca
from meshpilot.xds.translate import (
    TYPE_CLUSTER,
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SECRET,
    build_resources,
)

pytestmark = pytest.mark.timeout(120)

IP = "127.0.0.1"


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _UnixEcho(EchoHandler):
    def address_string(self) -> str:  # a unix peer has no host
        return "unix"


class _TcpEcho(socketserver.BaseRequestHandler):
    """Echoes until the peer closes: only the sidecar ends a connection it keeps."""

    def handle(self) -> None:
        self.request.settimeout(30)
        try:
            while data := self.request.recv(1024):
                self.request.sendall(b"echo:" + data)
        except OSError:
            pass


@dataclass(frozen=True)
class Scene:
    http: int  # ingress 9080 -> 127.0.0.1:<app> (an undeclared port)
    unix: int  # ingress -> unix socket
    tcp: int  # TCP ingress
    strict: int  # ingress with a port-level STRICT PeerAuthentication
    declared: int  # a declared container port no ingress names: kept
    simple: int  # tls SIMPLE from files, mode DISABLE
    mutual: int  # tls MUTUAL from a credentialName Secret, mode DISABLE
    strict_tls: int  # tls given, but the port's mode is STRICT
    envoy: EnvoyProcess
    client: Workload
    root: Path
    user_ca: Path
    user_cert: tuple[Path, Path]  # a client certificate the user's CA issued


def _objects(ports: dict[str, int], sock: Path, files: dict[str, Path]) -> dict[str, Any]:
    sidecar = f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: ratings, namespace: prod}}
spec:
  workloadSelector: {{labels: {{app: ratings}}}}
  ingress:
  - port: {{number: {ports['http']}, protocol: HTTP, name: somename}}
    defaultEndpoint: 127.0.0.1:{ports['app']}
  - port: {{number: {ports['unix']}, protocol: HTTP, name: uds}}
    defaultEndpoint: unix://{sock}
  - port: {{number: {ports['tcp']}, protocol: TCP, name: raw}}
    defaultEndpoint: 0.0.0.0:{ports['tcp_app']}
    connectionPool:
      tcp: {{maxConnections: 7, idleTimeout: 1s}}
      http: {{http1MaxPendingRequests: 3}}
  - port: {{number: {ports['strict']}, protocol: HTTP, name: locked}}
    defaultEndpoint: 127.0.0.1:{ports['app']}
  - port: {{number: {ports['simple']}, protocol: HTTPS, name: https-files}}
    defaultEndpoint: 127.0.0.1:{ports['app']}
    tls: {{mode: SIMPLE, serverCertificate: {files['chain']}, privateKey: {files['key']}}}
  - port: {{number: {ports['mutual']}, protocol: HTTPS, name: https-credential}}
    defaultEndpoint: 127.0.0.1:{ports['app']}
    tls: {{mode: MUTUAL, credentialName: ratings-cert}}
  - port: {{number: {ports['strict_tls']}, protocol: HTTPS, name: https-strict}}
    defaultEndpoint: 127.0.0.1:{ports['app']}
    tls: {{mode: SIMPLE, credentialName: ratings-cert}}
  inboundConnectionPool:
    tcp: {{maxConnections: 7}}
    http: {{http1MaxPendingRequests: 3}}
"""
    # On a TCP port Istio ignores a DENY rule's HTTP-only fields (denying more), so the
    # rule names the HTTP ingress ports: on those it is the path rule.
    http_ports = [str(ports[k]) for k in ("http", "unix", "strict", "simple", "mutual",
                                          "strict_tls")]
    deny = f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-admin, namespace: prod}}
spec:
  selector: {{matchLabels: {{app: ratings}}}}
  action: DENY
  rules: [{{to: [{{operation: {{paths: ["/admin*"], ports: {http_ports}}}}}]}}]
"""
    strict = f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: ratings, namespace: prod}}
spec:
  selector: {{matchLabels: {{app: ratings}}}}
  mtls: {{mode: PERMISSIVE}}
  portLevelMtls:
    "{ports['strict']}": {{mode: STRICT}}
    "{ports['strict_tls']}": {{mode: STRICT}}
    "{ports['simple']}": {{mode: DISABLE}}
    "{ports['mutual']}": {{mode: DISABLE}}
"""
    credential = Secret.model_validate({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "ratings-cert", "namespace": "prod"},
        "data": {"tls.crt": b64(tls_pairs.CHAIN), "tls.key": b64(tls_pairs.KEY),
                 "ca.crt": b64(pem(tls_pairs.CA))}})
    return {
        "sidecars": (Named("prod", "ratings", Sidecar.model_validate(yaml.safe_load(sidecar))),),
        "authorization_policies": (Named("prod", "no-admin", AuthorizationPolicy.model_validate(
            yaml.safe_load(deny))),),
        "peer_authentications": (Named("prod", "ratings", PeerAuthentication.model_validate(
            yaml.safe_load(strict))),),
        "secrets": (Named("prod", "ratings-cert", credential),),
    }


def _static(resources: dict[str, dict[str, Any]], node_id: str,
            secrets: list[dict[str, Any]]) -> dict[str, Any]:
    """The node's inbound listeners and clusters, inline: RDS made a static route
    config; SDS references pointed at the static secrets."""
    listeners = []
    for name, listener in sorted(resources[TYPE_LISTENER].items()):
        if not name.startswith("inbound_"):
            continue
        copy = type(listener)()
        copy.CopyFrom(listener)
        for chain in copy.filter_chains:
            for f in chain.filters:
                if f.name != "envoy.filters.network.http_connection_manager":
                    continue
                manager = hcm.HttpConnectionManager()
                f.typed_config.Unpack(manager)
                if manager.HasField("rds"):
                    route = resources[TYPE_ROUTE][manager.rds.route_config_name]
                    manager.ClearField("rds")
                    manager.route_config.CopyFrom(route)
                f.typed_config.Pack(manager)
        listeners.append(static_secret_refs(as_dict(copy)))
    clusters = [static_secret_refs(as_dict(c)) for n, c in sorted(resources[TYPE_CLUSTER].items())
                if n.startswith("inbound|")]
    served = [as_dict(x) for x in resources.get(TYPE_SECRET, {}).values()]
    return {"node": {"id": node_id, "cluster": node_id},
            "static_resources": {"listeners": listeners, "clusters": clusters,
                                 "secrets": [*secrets, *served]}}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    work = tmp_path_factory.mktemp("sidecar-ingress")
    ca = load_or_create_self_signed_ca(work / "ca")
    root = work / "root.pem"
    root.write_bytes(ca.trust_bundle.pem)
    certs = work / "certs"
    ratings = issue(ca, "prod", "ratings", certs)
    client = issue(ca, "prod", "productpage", certs)

    app = echo_server()
    app_port = serve(app)
    sock = work / "ratings.sock"
    unix_app = _UnixHTTPServer(str(sock), _UnixEcho)
    threading.Thread(target=unix_app.serve_forever, daemon=True).start()
    tcp_app = socketserver.ThreadingTCPServer((IP, 0), _TcpEcho)
    tcp_app.daemon_threads = True
    threading.Thread(target=tcp_app.serve_forever, daemon=True).start()
    declared_app = echo_server()
    declared_app_port = serve(declared_app)

    ports = {"http": free_port(), "unix": free_port(), "tcp": free_port(),
             "strict": free_port(), "declared": free_port(), "simple": free_port(),
             "mutual": free_port(), "strict_tls": free_port(), "app": app_port,
             "tcp_app": int(tcp_app.server_address[1])}
    files = {"chain": work / "user.pem", "key": work / "user.key", "ca": work / "user-ca.pem"}
    files["chain"].write_bytes(tls_pairs.CHAIN)
    files["key"].write_bytes(tls_pairs.KEY)
    files["key"].chmod(0o600)
    files["ca"].write_bytes(pem(tls_pairs.CA))
    node = ProxyNode(id=f"sidecar~{IP}~ratings-1.prod~prod.svc.cluster.local", kind="sidecar",
                     namespace="prod", ip=IP, workload="ratings", name="ratings-1",
                     service_account="ratings", labels={"app": "ratings"},
                     inbound=(InboundPort(ports["declared"], declared_app_port, "http"),))
    snapshot = MeshSnapshot(version=1, services={}, endpoints={},
                            **_objects(ports, sock, files))
    resources = build_resources(snapshot, node)
    config = _static(resources, node.id, workload_secrets(ratings, ca.trust_bundle.pem))
    envoy = EnvoyProcess(config, name="ratings", work_dir=work)
    try:
        envoy.start()
        assert envoy.wait_live(15), envoy.log_tail()
        for key in ("http", "unix", "tcp", "strict", "declared", "simple", "mutual",
                    "strict_tls"):
            assert wait_port(IP, ports[key], timeout=15), key
        yield Scene(ports["http"], ports["unix"], ports["tcp"], ports["strict"],
                    ports["declared"], ports["simple"], ports["mutual"], ports["strict_tls"],
                    envoy, client, root, files["ca"], (files["chain"], files["key"]))
    finally:
        envoy.stop()
        for server in (app, unix_app, tcp_app, declared_app):
            server.shutdown()
            server.server_close()


def _get(port: int, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection(IP, port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_an_ingress_listener_forwards_to_its_default_endpoint(scene: Scene) -> None:
    """Istio: ingress port 9080 with defaultEndpoint 127.0.0.1:8080; the app listens on
    the pod's own address at a port no container declares."""
    status, body = _get(scene.http, "/ratings/0")
    assert status == 200 and '"path": "/ratings/0"' in body


def test_an_ingress_listener_forwards_to_a_unix_socket(scene: Scene) -> None:
    """Istio: defaultEndpoint unix:///var/run/someuds.sock."""
    status, body = _get(scene.unix, "/uds")
    assert status == 200 and '"path": "/uds"' in body


def test_a_tcp_ingress_listener_forwards_bytes(scene: Scene) -> None:
    with socket.create_connection((IP, scene.tcp), timeout=5) as conn:
        conn.sendall(b"hello")
        assert conn.recv(1024) == b"echo:hello"


def test_a_tcp_ingress_listeners_pool_closes_idle_connections(scene: Scene) -> None:
    """The listener's connectionPool (replacing the Sidecar's, as in Istio): its
    tcp.idleTimeout of 1s closes a connection that stays silent."""
    with socket.create_connection((IP, scene.tcp), timeout=5) as conn:
        conn.sendall(b"hello")  # enough bytes for the TLS inspector to tell plaintext
        assert conn.recv(1024) == b"echo:hello"
        conn.settimeout(4)  # well past the idle timeout, well short of Envoy's 1h default
        assert conn.recv(1024) == b""  # closed by the sidecar


def test_a_declared_port_no_ingress_names_keeps_its_listener(scene: Scene) -> None:
    """Istio serves such a port through its inbound passthrough chain; here by its own
    listener, forwarding to the app as before."""
    assert _get(scene.declared, "/kept")[0] == 200


def test_authorization_is_enforced_through_an_ingress_listener(scene: Scene) -> None:
    """Istio's "Explicit deny": the DENY policy answers 403 on the ingress port too."""
    status, body = _get(scene.http, "/admin/x")
    assert status == 403 and "RBAC: access denied" in body
    assert _get(scene.unix, "/admin")[0] == 403
    assert _get(scene.http, "/ok")[0] == 200


def test_strict_mtls_is_enforced_through_an_ingress_listener(scene: Scene) -> None:
    """Istio's port-level STRICT PeerAuthentication on an ingress port: plaintext is
    refused; a client with a mesh certificate gets through, and still meets the DENY."""
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        _get(scene.strict, "/")
    context = ssl.create_default_context(cafile=str(scene.root))
    context.check_hostname = False  # a SPIFFE certificate names no host
    context.load_cert_chain(str(scene.client.chain_path), str(scene.client.key_path))
    for path, wanted in (("/in", 200), ("/admin", 403)):
        conn = http.client.HTTPSConnection(IP, scene.strict, timeout=5, context=context)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == wanted, path
            if wanted == 200:
                assert "spiffe://cluster.local/ns/prod/sa/productpage" in response.read().decode()
        finally:
            conn.close()


def test_the_inbound_connection_pool_bounds_the_connection_to_the_app(scene: Scene) -> None:
    """Istio's ``inboundConnectionPool``: circuit breakers on every inbound cluster, as
    the running Envoy reports them."""
    text = scene.envoy.admin._get("/clusters").text
    for port in (scene.http, scene.unix, scene.tcp, scene.declared):
        assert f"inbound|{port}||::default_priority::max_connections::7" in text, port
        assert f"inbound|{port}||::default_priority::max_pending_requests::3" in text, port


def _tls_get(port: int, context: ssl.SSLContext, path: str = "/") -> int:
    conn = http.client.HTTPSConnection(IP, port, timeout=5, context=context)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _user_context(scene: Scene, *, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(scene.user_ca))
    context.check_hostname = False
    if with_cert:
        context.load_cert_chain(*map(str, scene.user_cert))
    return context


def test_sidecar_ingress_tls_from_files_where_mtls_is_disabled(scene: Scene) -> None:
    """Istio's sidecar ingress TLS, SIMPLE with serverCertificate and privateKey: the
    listener presents the user's certificate (verified against the user's CA), the app
    gets plain HTTP, and the DENY policy still holds."""
    assert _tls_get(scene.simple, _user_context(scene), "/in") == 200
    assert _tls_get(scene.simple, _user_context(scene), "/admin") == 403
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        _get(scene.simple)  # plaintext meets a TLS listener


def test_sidecar_ingress_mutual_tls_from_a_credential(scene: Scene) -> None:
    """MUTUAL with credentialName: the Secret's certificate over SDS, and a client
    without a certificate of the Secret's CA refused."""
    assert _tls_get(scene.mutual, _user_context(scene, with_cert=True)) == 200
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _tls_get(scene.mutual, _user_context(scene))


def test_under_strict_the_port_speaks_the_meshs_mutual_tls(scene: Scene) -> None:
    """As in Istio: the user's tls applies only where the mode is DISABLE; under STRICT a
    mesh certificate gets through and the user's certificate is not what is presented."""
    with pytest.raises(ssl.SSLError):
        _tls_get(scene.strict_tls, _user_context(scene, with_cert=True))
    context = ssl.create_default_context(cafile=str(scene.root))
    context.check_hostname = False
    context.load_cert_chain(str(scene.client.chain_path), str(scene.client.key_path))
    assert _tls_get(scene.strict_tls, context) == 200
