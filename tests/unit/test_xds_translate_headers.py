"""Istio's default headers in the translation: attempt counts on the virtual hosts of
sidecars and gateways, client-certificate forwarding by chain, the proxies' server name
(as Istio's own proxies are configured; the e2e test_default_headers sees them on the
wire)."""

from __future__ import annotations

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from tests.unit.test_xds_translate import (
    GATEWAY_NODE,
    REVIEWS,
    SIDECAR,
    _hcm,
    gw,
    snapshot,
    vs,
)

from meshpilot.mesh.model import InboundPort
from meshpilot.xds.translate import TYPE_LISTENER, TYPE_ROUTE, build_resources

_Hcm = hcm.HttpConnectionManager


def _managers(listener) -> list[tuple[bool, _Hcm]]:  # type: ignore[no-untyped-def]
    """(whether the chain is mutual TLS, its connection manager) of each chain."""
    out = []
    for chain in listener.filter_chains:
        manager = _Hcm()
        chain.filters[-1].typed_config.Unpack(manager)
        out.append((chain.filter_chain_match.transport_protocol == "tls", manager))
    return out


def test_sidecar_vhosts_count_attempts_and_listeners_name_istio_envoy() -> None:
    res = build_resources(snapshot(), SIDECAR)
    vhosts = res[TYPE_ROUTE][f"outbound|{REVIEWS}"].virtual_hosts
    assert vhosts and all(v.include_request_attempt_count for v in vhosts)
    outbound = _hcm(res[TYPE_LISTENER]["outbound_http_proxy"])
    assert outbound.server_name == "istio-envoy"
    assert outbound.forward_client_cert_details == _Hcm.SANITIZE  # the app cannot forge it
    assert not outbound.HasField("generate_request_id")  # Envoy default: make x-request-id


def test_inbound_mtls_chain_appends_the_client_certificate_and_plaintext_drops_it() -> None:
    assert SIDECAR.inbound == (InboundPort(9080, 40001),)
    res = build_resources(snapshot(), SIDECAR)
    chains = dict(_managers(res[TYPE_LISTENER]["inbound_9080"]))
    assert set(chains) == {True, False}  # PERMISSIVE by default: both chains
    mtls, plain = chains[True], chains[False]
    assert mtls.forward_client_cert_details == _Hcm.APPEND_FORWARD
    details = mtls.set_current_client_cert_details
    assert details.subject.value and details.uri and details.dns
    assert plain.forward_client_cert_details == _Hcm.SANITIZE


def test_gateway_sets_client_certificate_details_and_counts_attempts() -> None:
    gateway = gw("""\
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
""")
    edge = vs("""\
metadata: {name: edge}
spec:
  hosts: ["*"]
  gateways: [istio-system/public]
  http:
  - route: [{destination: {host: reviews.default.svc.cluster.local}}]
""")
    res = build_resources(snapshot(gateway, edge), GATEWAY_NODE)
    manager = _hcm(res[TYPE_LISTENER]["gateway_80"])
    assert manager.forward_client_cert_details == _Hcm.SANITIZE_SET
    assert manager.server_name == "istio-envoy"
    assert all(v.include_request_attempt_count for v in res[TYPE_ROUTE]["http.80"].virtual_hosts)
