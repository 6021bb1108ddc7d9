"""Fields meshpilot accepts and does not apply are said out loud (MP2016), or refused where
ignoring them would weaken security (MP0046): at apply, and in analyze / describe.

Each case is a base object of its kind (which draws neither code) plus one field; the
field must be reported at its exact path, with its code, and the base must not be. A last
test checks that every row of the table is exercised by some case, so a row cannot rot
unseen.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from meshpilot.api.identity import ObjectKey
from meshpilot.validation import Plan, StateObject, check_state, plan_apply
from meshpilot.validation.unapplied_fields import TABLE

WARN, REFUSE = "MP2016", "MP0046"
CODES = (WARN, REFUSE)

JWKS = json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8",
                            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})
ROUTE = {"route": [{"destination": {"host": "reviews"}}]}

BASES: dict[str, tuple[str, dict[str, Any]]] = {
    "VirtualService": ("networking.istio.io/v1", {"hosts": ["reviews"], "http": [ROUTE]}),
    "DestinationRule": ("networking.istio.io/v1", {
        "host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}),
    "Gateway": ("networking.istio.io/v1", {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                     "hosts": ["*"]}]}),
    "ServiceEntry": ("networking.istio.io/v1", {
        "hosts": ["api.example.com"], "resolution": "STATIC",
        "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        "endpoints": [{"address": "10.0.0.1", "labels": {"app": "api"}}]}),
    "WorkloadEntry": ("networking.istio.io/v1", {"address": "10.0.0.2",
                                                 "labels": {"app": "vm"}}),
    "RequestAuthentication": ("security.istio.io/v1", {"jwtRules": [{"issuer": "a",
                                                                    "jwks": JWKS}]}),
    "Sidecar": ("networking.istio.io/v1", {"egress": [{"hosts": ["./*"]}]}),
    "PeerAuthentication": ("security.istio.io/v1", {"mtls": {"mode": "STRICT"}}),
    "AuthorizationPolicy": ("security.istio.io/v1", {
        "action": "DENY", "rules": [{"from": [{"source": {"namespaces": ["evil"]}}]}]}),
}


def merged(base: Any, patch: Any) -> Any:
    """``patch`` over ``base``: mappings merge key by key; a list patches the base list
    item by item (longer lists add items, an empty one empties it); anything else
    replaces."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merged(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(patch, list) and patch:
        return [merged(b, p) for b, p in zip(base, patch, strict=False)] + patch[len(base):] \
            + base[len(patch):]
    return copy.deepcopy(patch)


def document(kind: str, patch: dict[str, Any] | None = None) -> dict[str, Any]:
    api_version, spec = BASES[kind]
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": "it", "namespace": "shop"},
            "spec": merged(spec, patch or {})}


def plan(*docs: dict[str, Any]) -> Plan:
    return plan_apply([("it.yaml", yaml.safe_dump_all(docs, sort_keys=False))], [])


def reported(p: Plan) -> list[tuple[str, str]]:
    return [(d.code, d.path) for d in p.diagnostics if d.code in CODES]


def _http(**fields: Any) -> dict[str, Any]:
    return {"http": [fields]}


_POLICY_FIELDS: tuple[tuple[dict[str, Any], str], ...] = (
    ({"loadBalancer": {"simple": "PASSTHROUGH"}}, "loadBalancer.simple"),
    ({"loadBalancer": {"consistentHash": {"httpCookie": {
        "name": "s", "ttl": "0s", "attributes": [{"name": "SameSite", "value": "Strict"}]}}}},
     "loadBalancer.consistentHash.httpCookie.attributes"),
    ({"connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE"}}},
     "connectionPool.http.h2UpgradePolicy"),
    ({"connectionPool": {"http": {"useClientProtocol": True}}},
     "connectionPool.http.useClientProtocol"),
    ({"connectionPool": {"http": {"maxConcurrentStreams": 10}}},
     "connectionPool.http.maxConcurrentStreams"),
)
_WHOLE_POLICY_FIELDS: tuple[tuple[dict[str, Any], str], ...] = (
    ({"tunnel": {"protocol": "CONNECT", "targetHost": "proxy.example.com", "targetPort": 3128}},
     "tunnel"),
    ({"proxyProtocol": {"version": "V2"}}, "proxyProtocol"),
)


def _policy_places(policy: dict[str, Any], *, port_level: bool) -> list[tuple[dict[str, Any],
                                                                               str]]:
    """``policy`` at the top, in a subset and (``port_level``) in each's portLevelSettings."""
    if port_level:
        policy = {"portLevelSettings": [{"port": {"number": 9080}, **policy}]}
    prefix = ".portLevelSettings[0]" if port_level else ""
    return [({"trafficPolicy": policy}, f"spec.trafficPolicy{prefix}"),
            ({"subsets": [{"trafficPolicy": policy}]}, f"spec.subsets[0].trafficPolicy{prefix}")]


def _destination_rule_cases() -> list[tuple[str, dict[str, Any], str, str]]:
    out: list[tuple[str, dict[str, Any], str, str]] = []
    # tunnel and proxyProtocol exist on a whole traffic policy only, not per port
    for fields, port_levels in ((_POLICY_FIELDS, (False, True)),
                                (_WHOLE_POLICY_FIELDS, (False,))):
        for policy, field in fields:
            for port_level in port_levels:
                out += [("DestinationRule", patch, f"{at}.{field}", WARN)
                        for patch, at in _policy_places(policy, port_level=port_level)]
    return out


def _header_cases() -> list[tuple[str, dict[str, Any], str, str]]:
    edits = (({"request": {"set": {":path": "/x"}}}, "request.set.:path"),
             ({"request": {"add": {":method": "GET"}}}, "request.add.:method"),
             ({"response": {"set": {"host": "x"}}}, "response.set.host"),
             ({"response": {"add": {":status": "200"}}}, "response.add.:status"),
             ({"request": {"remove": ["Host"]}}, "request.remove[0]"),
             ({"response": {"remove": [":status"]}}, "response.remove[0]"))
    out = []
    for headers, field in edits:
        out.append(("VirtualService", _http(headers=headers), f"spec.http[0].headers.{field}",
                    WARN))
        out.append(("VirtualService", _http(route=[{"headers": headers}]),
                    f"spec.http[0].route[0].headers.{field}", WARN))
    return out


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("Sidecar", {"ingress": [{"port": {"number": 9080, "name": "http"}, "bind": "10.0.0.1"}]},
     "spec.ingress[0].bind", WARN),
    ("Sidecar", {"ingress": [{"port": {"number": 9080}, "captureMode": "IPTABLES"}]},
     "spec.ingress[0].captureMode", WARN),
    ("Sidecar", {"ingress": [{"port": {"number": 9080, "targetPort": 80}}]},
     "spec.ingress[0].port.targetPort", WARN),
    ("Sidecar", {"ingress": [{"port": {"number": 9080}, "tls": {
        "mode": "SIMPLE", "credentialName": "cert", "httpsRedirect": True}}]},
     "spec.ingress[0].tls.httpsRedirect", WARN),
    ("Sidecar", {"ingress": [{"port": {"number": 9080}, "connectionPool": {
        "http": {"useClientProtocol": True}}}]},
     "spec.ingress[0].connectionPool.http.useClientProtocol", WARN),
    ("Sidecar", {"egress": [{"port": {"number": 80, "name": "http"}}]}, "spec.egress[0].port",
     WARN),
    ("Sidecar", {"egress": [{"bind": "127.0.0.1"}]}, "spec.egress[0].bind", WARN),
    ("Sidecar", {"egress": [{"captureMode": "NONE"}]}, "spec.egress[0].captureMode", WARN),
    ("Sidecar", {"outboundTrafficPolicy": {"mode": "ALLOW_ANY", "egressProxy": {
        "host": "egress.istio-system.svc.cluster.local"}}},
     "spec.outboundTrafficPolicy.egressProxy", REFUSE),
    ("Sidecar", {"inboundConnectionPool": {"http": {"h2UpgradePolicy": "UPGRADE"}}},
     "spec.inboundConnectionPool.http.h2UpgradePolicy", WARN),
    ("Sidecar", {"inboundConnectionPool": {"http": {"useClientProtocol": True}}},
     "spec.inboundConnectionPool.http.useClientProtocol", WARN),
    ("Sidecar", {"inboundConnectionPool": {"http": {"maxConcurrentStreams": 5}}},
     "spec.inboundConnectionPool.http.maxConcurrentStreams", WARN),
    ("Sidecar", {"ingress": [{"port": {"number": 9080}, "connectionPool": {
        "http": {"h2UpgradePolicy": "UPGRADE"}}}]},
     "spec.ingress[0].connectionPool.http.h2UpgradePolicy", WARN),
    ("Sidecar", {"ingress": [{"port": {"number": 9080}, "connectionPool": {
        "http": {"maxConcurrentStreams": 5}}}]},
     "spec.ingress[0].connectionPool.http.maxConcurrentStreams", WARN),
    ("VirtualService", _http(match=[{"statPrefix": "mine"}]),
     "spec.http[0].match[0].statPrefix", WARN),
    ("VirtualService", {"http": [{}, {"redirect": {"uri": "/x",
                                                   "derivePort": "FROM_REQUEST_PORT"}}]},
     "spec.http[1].redirect.derivePort", WARN),
    ("VirtualService", {"http": [{}, {"redirect": {"uri": "/x", "redirectCode": 305}}]},
     "spec.http[1].redirect.redirectCode", WARN),
    ("VirtualService", _http(fault={"delay": {"exponentialDelay": "1s"}}),
     "spec.http[0].fault.delay.exponentialDelay", WARN),
    ("VirtualService", _http(fault={"abort": {"http2Error": "REFUSED_STREAM"}}),
     "spec.http[0].fault.abort.http2Error", WARN),
    *_header_cases(),
    *_destination_rule_cases(),
    ("Gateway", {"servers": [{"bind": "10.0.0.1"}]}, "spec.servers[0].bind", WARN),
    ("Gateway", {"servers": [{"defaultEndpoint": "127.0.0.1:8080"}]},
     "spec.servers[0].defaultEndpoint", WARN),
    ("Gateway", {"servers": [{"port": {"targetPort": 8080}}]},
     "spec.servers[0].port.targetPort", WARN),
    ("ServiceEntry", {"hosts": ["api.example.com", "*.example.com"], "resolution": "NONE",
                      "ports": [{"number": 27017, "name": "mongo", "protocol": "MONGO"}]},
     "spec.hosts", WARN),
    ("ServiceEntry", {"addresses": ["240.0.0.1", "240.0.1.0/24"]}, "spec.addresses[1]", WARN),
    ("ServiceEntry", {"subjectAltNames": ["spiffe://cluster.local/ns/shop/sa/api"]},
     "spec.subjectAltNames", REFUSE),
    ("ServiceEntry", {"endpoints": [{"serviceAccount": "api"}]},
     "spec.endpoints[0].serviceAccount", REFUSE),
    ("ServiceEntry", {"endpoints": [{"labels": {"security.istio.io/tlsMode": "istio"}}]},
     "spec.endpoints[0].labels.security.istio.io/tlsMode", REFUSE),
    ("WorkloadEntry", {"serviceAccount": "vm"}, "spec.serviceAccount", REFUSE),
    ("WorkloadEntry", {"labels": {"security.istio.io/tlsMode": "istio"}},
     "spec.labels.security.istio.io/tlsMode", REFUSE),
]


@pytest.mark.parametrize("kind", sorted(BASES))
def test_the_base_objects_draw_neither_code(kind: str) -> None:
    p = plan(document(kind))
    assert p.ok, [d.format() for d in p.diagnostics]
    assert reported(p) == []


@pytest.mark.parametrize(("kind", "patch", "path", "code"), CASES,
                         ids=[f"{c[0]}:{c[2]}" for c in CASES])
def test_an_unapplied_field_is_reported_at_its_path(kind: str, patch: dict[str, Any],
                                                    path: str, code: str) -> None:
    p = plan(document(kind, patch))
    assert reported(p) == [(code, path)], [d.format() for d in p.diagnostics]
    assert p.ok is (code == WARN)  # a refusal changes nothing
    (d,) = [d for d in p.diagnostics if d.code == code]
    assert "not applied" in d.message or "refused" in d.message
    assert d.line is not None  # placed in the file, as every diagnostic


NOT_REPORTED: list[tuple[str, dict[str, Any]]] = [
    ("ServiceEntry", {"endpoints": [{"network": "vpc-1"}]}),  # split-horizon EDS applies it
    ("WorkloadEntry", {"network": "vpc-1"}),
    ("VirtualService", {"exportTo": ["*"]}),
    ("VirtualService", {"http": [{}, {"redirect": {"uri": "/x", "redirectCode": 308}}]}),
    ("VirtualService", _http(retries={"attempts": 2, "retryRemoteLocalities": False})),
    ("VirtualService", _http(retries={"attempts": 2, "retryRemoteLocalities": True})),
    ("VirtualService", _http(match=[{"uri": {"prefix": "/A"}, "ignoreUriCase": True}])),
    ("VirtualService", _http(headers={"request": {"set": {":authority": "a", "host": "b",
                                                          "x-a": "1"},
                                                  "remove": ["x-b"]},
                                      "response": {"set": {"x-c": "1"}}})),
    ("DestinationRule", {"exportTo": ["*"]}),
    ("DestinationRule", {"workloadSelector": {"matchLabels": {"app": "web"}}}),
    ("DestinationRule", {"trafficPolicy": {
        "loadBalancer": {"simple": "LEAST_REQUEST", "localityLbSetting": {"enabled": False}},
        "connectionPool": {"http": {"h2UpgradePolicy": "DO_NOT_UPGRADE",
                                    "useClientProtocol": False, "maxConcurrentStreams": 0}},
        "tls": {"mode": "SIMPLE", "sni": "reviews.example.com",
                "subjectAltNames": ["reviews.example.com"]}}}),
    ("ServiceEntry", {"exportTo": ["*"], "hosts": ["api.example.com", "b.example.com"]}),
    ("ServiceEntry", {"endpoints": [{"locality": "eu/west/a"}]}),
    ("ServiceEntry", {"hosts": ["*.example.com"], "addresses": ["240.0.0.1", "240.0.0.2/32"]}),
    ("WorkloadEntry", {"locality": "eu/west/a"}),
    ("DestinationRule", {"trafficPolicy": {
        "loadBalancer": {"localityLbSetting": {"failoverPriority": ["app"]}},
        "outlierDetection": {"consecutive5xxErrors": 1}}}),
    ("ServiceEntry", {"endpoints": [{"labels": {"security.istio.io/tlsMode": "disabled"},
                                     "serviceAccount": "api"}]}),
    ("WorkloadEntry", {"labels": {"security.istio.io/tlsMode": "disabled"},
                       "serviceAccount": "vm"}),
    ("Sidecar", {"ingress": [{"port": {"number": 9080, "protocol": "HTTP", "name": "web"},
                              "captureMode": "NONE", "defaultEndpoint": "127.0.0.1:8080",
                              "connectionPool": {"tcp": {"maxConnections": 5}}},
                             {"port": {"number": 9081}, "captureMode": "DEFAULT",
                              "defaultEndpoint": "unix:///run/app.sock"}],
                 "inboundConnectionPool": {"http": {"http1MaxPendingRequests": 10}}}),
    ("RequestAuthentication", {"jwtRules": [{"outputPayloadToHeader": "x-payload",
                                             "forwardOriginalToken": True}]}),
]


@pytest.mark.parametrize(("kind", "patch"), NOT_REPORTED,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(NOT_REPORTED)])
def test_applied_fields_and_default_values_are_not_reported(kind: str, patch: dict[str, Any]
                                                            ) -> None:
    p = plan(document(kind, patch))
    assert reported(p) == [], [d.format() for d in p.diagnostics]


def test_l4_route_warnings_still_come_with_these() -> None:
    vs = document("VirtualService", {"http": [{"match": [{"statPrefix": "s"}], "route": [
        {"destination": {"host": "reviews"}}]}], "tcp": [{"match": [
        {"sourceSubnet": "not-a-block"}], "route": [
        {"destination": {"host": "reviews"}}]}], "hosts": ["reviews.example.com"]})
    assert "MP0033" in [d.code for d in plan(vs).diagnostics]
    spec = vs["spec"]
    spec["tcp"][0]["match"][0]["sourceSubnet"] = "10.0.0.0/8"
    assert WARN in [d.code for d in plan(vs).diagnostics]


def test_describe_and_analyze_show_them_for_a_stored_object() -> None:
    dr = document("DestinationRule", {"trafficPolicy": {"tunnel": {"targetHost": "p"}}})
    state = [StateObject(ObjectKey("networking.istio.io", "DestinationRule", "shop", "it"), dr)]
    found = [(d.code, d.path) for d in check_state(state, all_objects=True)]
    assert (WARN, "spec.trafficPolicy.tunnel") in found
    # an object stored before the refusal existed shows it too
    entry = document("WorkloadEntry", {"serviceAccount": "vm"})
    state = [StateObject(ObjectKey("networking.istio.io", "WorkloadEntry", "shop", "it"),
                         entry)]
    found = [(d.code, d.path) for d in check_state(state, all_objects=True)]
    assert (REFUSE, "spec.serviceAccount") in found


def test_every_row_of_the_table_is_exercised() -> None:
    bodies: dict[str, list[dict[str, Any]]] = {}
    for kind, patch, _, _ in CASES:
        bodies.setdefault(kind, []).append(document(kind, patch))
    idle = [(kind, row.pattern) for kind, rows in TABLE.items() for row in rows
            if not any(any(True for _ in row.hits(body)) for body in bodies.get(kind, []))]
    assert idle == []


@pytest.mark.parametrize("protocol", ["HTTP", "TLS", "HTTPS"])
def test_a_wildcard_entry_resolved_none_is_applied_where_connections_name_a_host(
        protocol: str) -> None:
    """Istio's "Egress using Wildcard Hosts" (``*.wikipedia.org``, resolution NONE): the
    request's host or the SNI name stands in for the original destination."""
    entry = document("ServiceEntry", {
        "hosts": ["*.example.com"], "resolution": "NONE", "endpoints": [],
        "ports": [{"number": 443, "name": protocol.lower(), "protocol": protocol}]})
    p = plan(entry)
    assert p.ok and reported(p) == [], [d.format() for d in p.diagnostics]


def test_sidecar_ingress_tls_says_where_it_applies() -> None:
    """Istio applies a Sidecar ingress listener's tls only where the port's mutual TLS
    mode is DISABLE: applied, with MP2028 saying so."""
    p = plan(document("Sidecar", {"ingress": [{"port": {"number": 9080}, "tls": {
        "mode": "MUTUAL", "credentialName": "cert"}}]}))
    assert p.ok
    (d,) = [d for d in p.diagnostics if d.code == "MP2028"]
    assert d.path == "spec.ingress[0].tls" and "DISABLE" in d.message
