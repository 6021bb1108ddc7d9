"""The destination side's request counting on a real Envoy, built by the translation.

Given a server sidecar (workload ``foo/httpbin``) whose inbound listener, route config and
cluster come from ``listeners.inbound``, ``inbound_route`` and ``clusters.inbound`` (the
route config inline instead of over RDS), with the bootstrap's real stats matcher, a
PERMISSIVE port, a DENY policy on ``/admin*`` and a JWT rule; and callers with
certificates from meshpilot's CA (``foo/sleep``, ``foo/evil``) or none; when requests are
sent, then what telemetry reads from the admin endpoint (the scraper's own filter) and
relabels into Istio's series says:

- every answer counts with its code, the sidecar's own 403 (RBAC) and 401 (JWT) included,
  and with its duration;
- a claim is believed over mTLS only from the certificate of the identity it names;
  plaintext claims count as plaintext, and a forged principal header changes nothing
  (the app is told who really called);
- whatever plaintext clients claim, the counters stay within the known names.
"""

from __future__ import annotations

import http.client
import http.server
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from tests.integration.echo_app import echo_server, serve
from tests.integration.security_envoy import (
    Workload,
    as_dict,
    issue,
    static_secret_refs,
    workload_secrets,
)

from meshpilot.api.security import AuthorizationPolicy
from meshpilot.mesh.model import InboundPort, MeshSnapshot, ProxyNode
from meshpilot.mesh.sources import UNKNOWN_SOURCE, counted_name
from meshpilot.proxy.bootstrap import regex_only_matcher
from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import free_port, wait_port
from meshpilot.proxy.stats import stats_config
from meshpilot.security import authorization_for, load_or_create_self_signed_ca
from meshpilot.telemetry.envoy_stats import STATS_PARAMS, parse_json
from meshpilot.telemetry.istio import Point, ProxyIdentity, relabel
from meshpilot.xds.translate import clusters, inbound_route, jwt, listeners, tls
from meshpilot.xds.translate.workload_security import InboundSecurity

pytestmark = pytest.mark.timeout(120)

TD = "cluster.local"
SLEEP = "sleep|foo|sleep|v1|sleep"
EVIL = "evil|foo|evil|v1|evil"
SOURCES = (SLEEP, EVIL)
DENY_ADMIN = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: foo}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
"""
JWKS = json.dumps({"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0", "alg": "HS256"}]})



@dataclass(frozen=True)
class Server:
    port: int
    root: Path
    sleep: Workload
    evil: Workload
    stranger: Workload  # an identity of the mesh's CA that no known source has
    envoy: EnvoyProcess
    node: ProxyNode


def _bootstrap(node: ProxyNode, httpbin: Workload, bundle: bytes) -> dict[str, Any]:
    """The sidecar's inbound side as a static bootstrap, with the real stats matcher."""
    (port,) = node.inbound
    policy = AuthorizationPolicy.model_validate(yaml.safe_load(DENY_ADMIN))
    security = InboundSecurity(
        TD, ((port.container_port, "PERMISSIVE"),),
        authorization_for([policy], node.namespace, node.labels),
        (jwt.JwtRule(issuer="https://issuer.example", jwks=JWKS),))
    listener = listeners.inbound(node, port, security)
    route = inbound_route(port.container_port, SOURCES, TD)
    for chain in listener.filter_chains:  # the route config inline instead of over RDS
        manager = hcm.HttpConnectionManager()
        chain.filters[-1].typed_config.Unpack(manager)
        manager.ClearField("rds")
        manager.route_config.CopyFrom(route)
        chain.filters[-1].typed_config.Pack(manager)
    return {
        "node": {"id": node.id, "cluster": node.id},
        "static_resources": {"listeners": [static_secret_refs(as_dict(listener))],
                             "clusters": [as_dict(c) for c in clusters.inbound(node)],
                             "secrets": workload_secrets(httpbin, bundle)},
        **regex_only_matcher(stats_config()),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("inbound-telemetry")
    ca = load_or_create_self_signed_ca(work / "ca")
    root = work / "root.pem"
    root.write_bytes(ca.trust_bundle.pem)
    httpbin, sleep, evil, stranger = (issue(ca, "foo", sa, work / "certs")
                                      for sa in ("httpbin", "sleep", "evil", "stranger"))
    app = echo_server()
    serve(app)
    port = free_port()
    node = ProxyNode(id="sidecar~127.0.0.1~httpbin-0.foo~foo.svc.cluster.local",
                     kind="sidecar", namespace="foo", ip="127.0.0.1", workload="httpbin",
                     name="httpbin-0", service_account="httpbin",
                     labels={"app": "httpbin", "version": "v1"},
                     inbound=(InboundPort(port, app.server_address[1]),))
    envoy = EnvoyProcess(_bootstrap(node, httpbin, ca.trust_bundle.pem), name="httpbin",
                         work_dir=work)
    try:
        envoy.start()
        assert envoy.wait_live(15), envoy.log_tail()
        assert wait_port("127.0.0.1", port, timeout=15)
        yield Server(port, root, sleep, evil, stranger, envoy, node)
    finally:
        envoy.stop()
        app.shutdown()
        app.server_close()


def get(server: Server, path: str = "/", *, claim: str | None = None,
        cert: Workload | None = None, headers: dict[str, str] | None = None
        ) -> tuple[int, bytes]:
    """A GET claiming source ``claim``, over mTLS as ``cert`` or (None) in plaintext."""
    if cert is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection(
            "127.0.0.1", server.port, timeout=10)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(cafile=str(server.root))
        context.load_cert_chain(str(cert.chain_path), str(cert.key_path))
        context.set_alpn_protocols([*tls.ISTIO_ALPNS, "http/1.1"])  # as a sidecar does
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10,
                                           context=context)
    try:
        conn.request("GET", path, headers={
            **({"x-meshpilot-source": claim} if claim is not None else {}), **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def points(server: Server) -> list[Point]:
    """What telemetry makes of the sidecar's stats (the scraper's request)."""
    body = server.envoy.admin.stats_bytes(STATS_PARAMS)
    identity = ProxyIdentity.from_node(server.node)
    return list(relabel(identity, server.node, parse_json(body),
                        MeshSnapshot(version=1, services={}, endpoints={})))


def counted(server: Server, **want: str) -> dict[str, float]:
    """``istio_requests_total`` at the destination by response code, for the series
    with the ``want`` labels."""
    out: dict[str, float] = {}
    for p in points(server):
        labels = dict(p.labels)
        if p.metric == "istio_requests_total" and all(labels[k] == v for k, v in want.items()):
            out[labels["response_code"]] = out.get(labels["response_code"], 0) + p.value
    return out


def durations(server: Server, **want: str) -> float:
    return sum(p.hist.count for p in points(server) if p.hist is not None
               and p.metric == "istio_request_duration_milliseconds"
               and all(dict(p.labels)[k] == v for k, v in want.items()))


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {code: n - before.get(code, 0) for code, n in after.items()
            if n != before.get(code, 0)}


SLEEP_PROVED = {"reporter": "destination", "source_workload": "sleep",
                "source_principal": "spiffe://cluster.local/ns/foo/sa/sleep",
                "connection_security_policy": "mutual_tls", "destination_workload": "httpbin",
                "destination_principal": "spiffe://cluster.local/ns/foo/sa/httpbin"}


def test_refused_requests_count_with_their_code_their_caller_and_their_duration(
        server: Server) -> None:
    before, timed = counted(server, **SLEEP_PROVED), durations(server, **SLEEP_PROVED)
    for _ in range(3):
        assert get(server, "/", claim=SLEEP, cert=server.sleep)[0] == 200
    for _ in range(2):
        assert get(server, "/admin", claim=SLEEP, cert=server.sleep) == (
            403, b"RBAC: access denied")
    status, body = get(server, "/", claim=SLEEP, cert=server.sleep,
                       headers={"Authorization": "Bearer not-a-token"})
    assert status == 401 and body.startswith(b"Jwt"), body
    assert _delta(before, counted(server, **SLEEP_PROVED)) == {"200": 3, "403": 2, "401": 1}
    assert durations(server, **SLEEP_PROVED) - timed == 6


FORGED_PROOF = {tls.PEER_PRINCIPAL_HEADER: "spiffe://cluster.local/ns/foo/sa/sleep"}


def test_a_claim_is_believed_over_mtls_only_from_its_own_identity(server: Server) -> None:
    unproved = {"source_workload": "unknown", "connection_security_policy": "mutual_tls"}
    before, proved = counted(server, **unproved), counted(server, **SLEEP_PROVED)
    assert get(server, "/admin", claim=SLEEP, cert=server.evil, headers=FORGED_PROOF)[0] == 403
    assert get(server, "/", claim=SLEEP, cert=server.evil, headers=FORGED_PROOF)[0] == 200
    # and an identity the mesh knows no source of (a workload not in the route config yet)
    assert get(server, "/", claim=SLEEP, cert=server.stranger)[0] == 200
    assert _delta(before, counted(server, **unproved)) == {"403": 1, "200": 2}
    assert counted(server, **SLEEP_PROVED) == proved
    assert counted(server, source_workload="evil") == {}  # it claimed to be sleep


def test_plaintext_claims_count_as_plaintext_and_a_forged_proof_changes_nothing(
        server: Server) -> None:
    plaintext = {"source_workload": "sleep", "connection_security_policy": "none"}
    before, proved = counted(server, **plaintext), counted(server, **SLEEP_PROVED)
    for path in ("/", "/admin"):
        get(server, path, claim=SLEEP, headers=FORGED_PROOF)
    assert _delta(before, counted(server, **plaintext)) == {"200": 1, "403": 1}
    assert counted(server, **SLEEP_PROVED) == proved
    series = [dict(p.labels) for p in points(server) if p.metric == "istio_requests_total"
              and dict(p.labels)["connection_security_policy"] == "none"]
    assert series and all(s["source_principal"] == "unknown" == s["destination_principal"]
                          for s in series)


def test_whatever_plaintext_clients_claim_the_names_stay_the_known_ones(
        server: Server) -> None:
    unknown = {"source_workload": "unknown", "connection_security_policy": "none"}
    before = counted(server, **unknown)
    for i in range(40):
        get(server, "/admin" if i % 2 else "/", claim=f"made-up-{i}|x|y|z|w")
    stats = json.loads(server.envoy.admin.stats_bytes(STATS_PARAMS))["stats"]
    names = {s["name"].rsplit(".source.", 1)[1] for s in stats
             if "name" in s and ".source." in s["name"]}
    known = {counted_name(s, m) for s in (*SOURCES, UNKNOWN_SOURCE) for m in (True, False)}
    assert names <= known, names - known
    assert _delta(before, counted(server, **unknown)) == {"200": 20, "403": 20}


def test_the_app_is_told_who_really_called(server: Server) -> None:
    status, body = get(server, "/", claim=SLEEP, cert=server.evil, headers=FORGED_PROOF)
    assert status == 200
    assert json.loads(body)["headers"][tls.PEER_PRINCIPAL_HEADER] == server.evil.identity.uri
