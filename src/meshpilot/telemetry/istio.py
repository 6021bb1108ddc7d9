"""Envoy stats of one proxy → Istio's standard series (names, types, labels, buckets).

Reporter ``source`` comes from a proxy's outbound clusters ``outbound|PORT|SUBSET|HOST``
(every proxy: sidecars, the mesh proxy, the ingress gateway):

- ``destination_service`` is HOST, ``destination_service_name/namespace`` its Service;
- ``destination_version`` is the DestinationRule subset's ``version`` label; without a
  subset, the version shared by every endpoint of HOST:PORT (``unknown`` if they differ);
  ``destination_workload``/``_namespace``/``_app`` likewise from the endpoints;
- ``source_*`` is the proxy itself; ``connection_security_policy`` is ``unknown`` (as
  Istio reports at the source);
- a request routed to a retry-on-primary aggregate cluster is reported under the member
  cluster that answered it, told by the upstream host its proxy counted it with
  (:func:`answered_destination`).

Reporter ``destination`` comes from a sidecar's inbound side: per inbound HTTP port,
the counters and duration histograms its listener keeps per counted source (see
:mod:`meshpilot.mesh.sources`), which hold every request the sidecar answered, those it
refused itself (403 from an AuthorizationPolicy, 401 from a RequestAuthentication)
included, as Istio's stats filter counts them. ``destination_*`` is the pod (its
Deployment and labels) and the Service whose endpoint it is;
``connection_security_policy`` is ``mutual_tls`` for requests that came over mutual TLS
(``destination_principal`` the pod's own SPIFFE ID, ``source_principal`` the caller's
when its certificate proved the source it claimed), ``none`` for plaintext ones; a caller
that is not a known source, or not proved to be the one it claims, is ``unknown``.

Requests are counted, on both sides, by the connection managers' stats access loggers
(:mod:`meshpilot.xds.translate.telemetry`): every series carries Envoy's response flags
as it reports them (``-``, ``UH``, ``UF``, ``URX``, ``NR``, ``UO``, ``DC``, ``UT``,
``FI``, ``RL``...; several joined by commas, as in its access log) and the response code
(``0`` when none was sent), the duration and size histograms included, as Istio's
"Standard Metrics" page lists them. A request the client sidecar answers itself (a fault
injected abort, no route: ``destination_service`` ``unknown``) is counted at the source
too. On the source side TCP ports give the ``istio_tcp_*`` counters from the cluster's
connection counters; on the destination side from the inbound TCP port's filter chains,
one for mutual TLS (``connection_security_policy="mutual_tls"``,
``destination_principal`` the pod's SPIFFE ID, counted per caller: ``source_principal``
from its certificate, and its workload when that identity is one workload's) and one for
plaintext (``none``, the caller ``unknown``, as Istio has no peer metadata there).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from meshpilot.mesh import index
from meshpilot.mesh.index import destination_rule, with_service_protocols
from meshpilot.mesh.model import Endpoint, MeshService, MeshSnapshot, ProxyNode
from meshpilot.mesh.protocols import is_tcp
from meshpilot.mesh.sidecar_ingress import applied
from meshpilot.mesh.sources import (
    DURATION_STAT,
    MUTUAL_TLS,
    REQUEST_BYTES_STAT,
    REQUESTS_STAT,
    RESPONSE_BYTES_STAT,
    RETRY_ON_PRIMARY,
    TCP_CLOSED_STAT,
    TCP_OPENED_STAT,
    TCP_RECEIVED_STAT,
    TCP_SENT_STAT,
    answered_by,
    parse_counted,
    retry_aggregate,
    source_identity,
    spiffe_id,
)
from meshpilot.telemetry.egress import egress_destination
from meshpilot.telemetry.envoy_stats import (
    InboundStat,
    InboundTcpStat,
    RawStats,
    RequestStat,
    split_cluster_stat,
    split_inbound_stat,
    split_inbound_tcp_stat,
    split_outbound_stat,
)

UNKNOWN = "unknown"
CLUSTER_ID = "Kubernetes"  # Istio's default cluster id

REQUESTS_TOTAL = "istio_requests_total"
REQUEST_DURATION = "istio_request_duration_milliseconds"
REQUEST_BYTES = "istio_request_bytes"
RESPONSE_BYTES = "istio_response_bytes"
TCP_SENT = "istio_tcp_sent_bytes_total"
TCP_RECEIVED = "istio_tcp_received_bytes_total"
TCP_OPENED = "istio_tcp_connections_opened_total"
TCP_CLOSED = "istio_tcp_connections_closed_total"

DURATION_BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
    600000, 1800000, 3600000)
BYTES_BUCKETS: tuple[float, ...] = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000)

METRICS: MappingProxyType[str, tuple[str, str, tuple[float, ...]]] = MappingProxyType({
    REQUESTS_TOTAL: ("counter", "Requests handled by a proxy.", ()),
    REQUEST_DURATION: ("histogram", "Request duration in milliseconds.", DURATION_BUCKETS),
    REQUEST_BYTES: ("histogram", "HTTP request body sizes in bytes.",
                    BYTES_BUCKETS),
    RESPONSE_BYTES: ("histogram", "HTTP response body sizes in bytes.",
                     BYTES_BUCKETS),
    TCP_SENT: ("counter", "Bytes sent to the downstream on TCP connections.", ()),
    TCP_RECEIVED: ("counter", "Bytes received from the downstream on TCP connections.", ()),
    TCP_OPENED: ("counter", "TCP connections opened.", ()),
    TCP_CLOSED: ("counter", "TCP connections closed.", ()),
})

LABEL_NAMES: tuple[str, ...] = (
    "reporter", "source_workload", "source_workload_namespace", "source_principal",
    "source_app", "source_version", "source_canonical_service", "source_canonical_revision",
    "source_cluster", "destination_workload", "destination_workload_namespace",
    "destination_principal", "destination_app", "destination_version", "destination_service",
    "destination_service_name", "destination_service_namespace",
    "destination_canonical_service", "destination_canonical_revision", "destination_cluster",
    "request_protocol", "response_flags", "connection_security_policy", "response_code",
    "grpc_response_status",
)
TCP_LABEL_NAMES = tuple(n for n in LABEL_NAMES if n not in ("response_code",
                                                            "grpc_response_status"))

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class HistValue:
    """Cumulative bucket counts (the last one is ``+Inf``) and the sum."""

    buckets: tuple[float, ...]
    sum: float

    @property
    def count(self) -> float:
        return self.buckets[-1] if self.buckets else 0.0


@dataclass(frozen=True)
class Point:
    """One Istio series as one proxy reports it, from one Envoy stat (``raw``)."""

    metric: str
    labels: Labels
    raw: str
    value: float = 0.0
    hist: HistValue | None = None


@dataclass(frozen=True)
class ProxyIdentity:
    """Who a proxy is, for labels: its workload (Deployment), namespace and labels."""

    name: str  # pod name, mesh-proxy, istio-ingressgateway
    kind: str  # sidecar, client, gateway
    namespace: str
    workload: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str = ""

    @staticmethod
    def from_node(node: ProxyNode, workload: str | None = None) -> ProxyIdentity:
        return ProxyIdentity(node.name or node.workload or node.id, node.kind,
                             node.namespace, workload or node.workload,
                             dict(node.labels), node.ip)


def _canonical(labels: Mapping[str, str], workload: str) -> tuple[str, str]:
    service = (labels.get("service.istio.io/canonical-name")
               or labels.get("app.kubernetes.io/name") or labels.get("app") or workload
               or UNKNOWN)
    revision = (labels.get("service.istio.io/canonical-revision")
                or labels.get("app.kubernetes.io/version") or labels.get("version")
                or "latest")
    return service, revision


def _side(prefix: str, workload: str, namespace: str, labels: Mapping[str, str],
          known: bool = True) -> dict[str, str]:
    if not known:
        return {f"{prefix}_{k}": UNKNOWN for k in (
            "workload", "workload_namespace", "principal", "app", "version",
            "canonical_service", "canonical_revision", "cluster")}
    service, revision = _canonical(labels, workload)
    return {
        f"{prefix}_workload": workload or UNKNOWN,
        f"{prefix}_workload_namespace": namespace or UNKNOWN,
        f"{prefix}_principal": UNKNOWN,
        f"{prefix}_app": labels.get("app") or UNKNOWN,
        f"{prefix}_version": labels.get("version") or UNKNOWN,
        f"{prefix}_canonical_service": service,
        f"{prefix}_canonical_revision": revision,
        f"{prefix}_cluster": CLUSTER_ID,
    }


def _uniform(values: Iterable[str]) -> str:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else UNKNOWN


@dataclass(frozen=True)
class _Dest:
    labels: dict[str, str]
    protocol: str  # HTTP, HTTP2, GRPC, TCP...


def _protocol_label(protocol: str) -> str:
    return "grpc" if protocol == "GRPC" else "tcp" if is_tcp(protocol) else "http"


def outbound_destination(snapshot: MeshSnapshot, node: ProxyNode, cluster: str) -> _Dest | None:
    """Destination labels of ``outbound|PORT|SUBSET|HOST`` as seen from ``node``."""
    parsed = _parse_outbound(cluster)
    if parsed is None:
        return None
    port, subset, host = parsed
    service = snapshot.services.get(host)
    subset_labels = _subset_labels(snapshot, node, host, subset)
    workloads = [e for e in snapshot.endpoints.get(host, ())
                 if e.service_port == port and e.workload
                 and all(e.labels.get(k) == v for k, v in subset_labels.items())]
    labels = {
        **_destination_workload(workloads, subset_labels),
        "destination_principal": UNKNOWN,
        "destination_service": host,
        "destination_service_name": service.name if service else host,
        "destination_service_namespace": service.namespace if service else UNKNOWN,
    }
    return _Dest(labels, _service_protocol(service, port))


def _parse_outbound(cluster: str) -> tuple[int, str, str] | None:
    """(port, subset, host) of ``outbound|PORT|SUBSET|HOST``; None for any other name."""
    parts = cluster.split("|")
    if len(parts) != 4 or parts[0] != "outbound":
        return None
    _, port_text, subset, host = parts
    try:
        return int(port_text), subset, host
    except ValueError:
        return None


def _subset_labels(snapshot: MeshSnapshot, node: ProxyNode, host: str,
                   subset: str) -> dict[str, str]:
    """The labels that select ``subset`` of ``host`` in the DestinationRule ``node`` sees.

    Empty, so that every endpoint of the port matches, without a subset or when no
    visible rule defines it.
    """
    if not subset:
        return {}
    rule = destination_rule(snapshot, host, node)
    labels: dict[str, str] = {}
    for s in rule.spec.subsets if rule else ():
        if s.name == subset:
            labels = dict(s.labels or {})
    return labels


def _destination_workload(workloads: list[Endpoint],
                          subset_labels: Mapping[str, str]) -> dict[str, str]:
    """The ``destination_*`` labels of the pods behind a cluster.

    A subset's own ``version``/``app`` labels win; otherwise a value counts only when
    every pod shares it: a cluster's stats do not say which of its pods served a request.
    """
    version = subset_labels.get("version") or _uniform(
        e.labels.get("version", UNKNOWN) for e in workloads)
    app = subset_labels.get("app") or _uniform(e.labels.get("app", UNKNOWN) for e in workloads)
    workload = _uniform(e.workload for e in workloads)
    return {
        "destination_workload": workload,
        "destination_workload_namespace": _uniform(e.namespace for e in workloads),
        "destination_app": app,
        "destination_version": version,
        "destination_canonical_service": app if app != UNKNOWN else workload,
        "destination_canonical_revision": version if version != UNKNOWN else "latest",
        "destination_cluster": CLUSTER_ID if workload != UNKNOWN else UNKNOWN,
    }


def _service_protocol(service: MeshService | None, port: int) -> str:
    service_port = service.port(port) if service is not None else None
    return service_port.protocol if service_port else "HTTP"


def inbound_service(snapshot: MeshSnapshot, ip: str, port: int,
                    app: str | None) -> tuple[str, str, str]:
    """(host, name, namespace) of the Service whose endpoint ``ip:port`` is."""
    hosts = sorted(h for h, eps in snapshot.endpoints.items()
                   if any(e.address == ip and e.port == port for e in eps))
    services = [snapshot.services[h] for h in hosts if h in snapshot.services]
    if not services:
        return UNKNOWN, UNKNOWN, UNKNOWN
    chosen = next((s for s in services if app and s.name == app), services[0])
    return chosen.host, chosen.name, chosen.namespace


def _labels(values: Mapping[str, str], names: tuple[str, ...] = LABEL_NAMES) -> Labels:
    return tuple((n, values.get(n, "")) for n in names)


def _hist(raw: RawStats, name: str, metric: str):
    h = raw.histograms.get(name)
    if h is None:
        return None
    return HistValue(h.cumulative(METRICS[metric][2]), h.sum)


def relabel(identity: ProxyIdentity, node: ProxyNode, raw: RawStats,
            snapshot: MeshSnapshot, cache: dict[str, _Dest | None] | None = None
            ) -> Iterator[Point]:
    """Every Istio point one proxy's stats give (see the module docstring)."""
    cache = {} if cache is None else cache
    me = _side("source", identity.workload, identity.namespace, identity.labels)
    inbound = _Inbound(identity, node, snapshot)

    def dest_for(cluster: str) -> _Dest | None:
        if cluster not in cache:
            egress = egress_destination(cluster)
            cache[cluster] = _Dest(egress, "HTTP") if egress else \
                outbound_destination(snapshot, node, cluster) or \
                answered_destination(snapshot, node, cluster)
        return cache[cluster]

    names = sorted(set(raw.counters) | set(raw.histograms))
    counted_apart = _answered_aggregates(names)
    for name in names:
        outbound = split_outbound_stat(name)
        if outbound is not None:
            if outbound.cluster in counted_apart:
                continue  # counted again with the host that answered: those are reported
            dest = dest_for(outbound.cluster) or _unrouted(outbound.cluster)
            base = {"reporter": "source", **me, **dest.labels,
                    "request_protocol": _protocol_label(dest.protocol),
                    "connection_security_policy": UNKNOWN}
            yield from _request_points(name, outbound, base, dest.protocol == "GRPC", raw)
            continue
        split = split_cluster_stat(name)
        if split is None:
            yield from _inbound_points(name, inbound, raw)
            continue
        cluster, stat_name = split
        dest = dest_for(cluster) if cluster.startswith("outbound|") else None
        if dest is None or not is_tcp(dest.protocol):
            continue  # HTTP requests are counted by the connection managers' loggers
        base = {"reporter": "source", **me, **dest.labels,
                "request_protocol": _protocol_label(dest.protocol),
                "response_flags": "-", "connection_security_policy": UNKNOWN}
        yield from _tcp_cluster_points(name, stat_name, base, raw)


def _answered_aggregates(names: Iterable[str]) -> set[str]:
    """The retry-on-primary aggregates whose requests this proxy also counted with the
    host that answered them (:data:`~meshpilot.mesh.sources.RETRY_ON_PRIMARY`). Their
    count under the aggregate's name alone is left out: it holds the same requests. A
    proxy configured before it counted them apart (or whose listener has not yet caught
    up with its routes) keeps reporting them under the aggregate."""
    out: set[str] = set()
    for name in names:
        if RETRY_ON_PRIMARY not in name:
            continue  # a substring test: the names of a proxy without one cost no more
        stat = split_outbound_stat(name)
        pair = answered_by(stat.cluster) if stat is not None else None
        if pair is not None:
            out.add(pair[0])
    return out


def answered_destination(snapshot: MeshSnapshot, node: ProxyNode, cluster: str
                         ) -> _Dest | None:
    """Destination labels of a retry-on-primary aggregate's requests answered by the
    upstream host ``address:port`` (``retry_on_primary|<canary>|<primary>|<host>``): the
    labels of the member cluster whose endpoints hold that host, as if the request had
    been routed to it (the primary's on a request the canary failed and the primary
    answered, as Istio's client-side series name the workload that gave the final
    response). A host in neither member, or in both (an east-west gateway's address
    stands for every pod behind it), or none (``-``), keeps the aggregate's name and
    ``unknown`` workload labels. None for any other cluster name."""
    pair = answered_by(cluster)
    if pair is None:
        return None
    aggregate, host = pair
    address, _, port = host.rpartition(":")
    members = retry_aggregate(aggregate) or ()
    serving = [m for m in members if _serves(snapshot, node, m, address.strip("[]"), port)]
    if len(serving) == 1:
        return outbound_destination(snapshot, node, serving[0])
    return _unrouted(aggregate)


def _serves(snapshot: MeshSnapshot, node: ProxyNode, cluster: str, address: str,
            port: str) -> bool:
    """Whether ``address:port`` is an endpoint of ``outbound|PORT|SUBSET|HOST``."""
    parsed = _parse_outbound(cluster)
    if parsed is None:
        return False
    service_port, subset, host = parsed
    labels = _subset_labels(snapshot, node, host, subset)
    return any(e.address == address and str(e.port) == port and e.service_port == service_port
               and all(e.labels.get(k) == v for k, v in labels.items())
               for e in snapshot.endpoints.get(host, ()))


def _unrouted(cluster: str) -> _Dest:
    """The destination of requests counted under a cluster that is neither a mesh
    service's nor an egress one (:mod:`~meshpilot.telemetry.egress`): ``-`` or nothing
    (no route matched, Envoy's ``NR``; a direct response) knows nothing; another cluster
    names itself as the service, as Istio reports its own."""
    service = UNKNOWN if cluster in ("", "-") else cluster
    labels = {k: UNKNOWN for k in (
        "destination_workload", "destination_workload_namespace", "destination_principal",
        "destination_app", "destination_version", "destination_canonical_service",
        "destination_canonical_revision", "destination_cluster",
        "destination_service_namespace")}
    return _Dest({**labels, "destination_service": service,
                  "destination_service_name": service}, "HTTP")


class _Inbound:
    """The destination side of one sidecar: the labels its inbound ports report with."""

    def __init__(self, identity: ProxyIdentity, node: ProxyNode,
                 snapshot: MeshSnapshot) -> None:
        self.identity = identity
        self.snapshot = snapshot
        self.me = _side("destination", identity.workload, identity.namespace,
                        identity.labels)
        self.principal = spiffe_id(snapshot.trust_domain, node.namespace,
                                   node.service_account)
        self.protocols = {p.container_port: p.protocol
                          for p in applied(snapshot,
                                           with_service_protocols(snapshot, node)).inbound}
        self._bases: dict[int, dict[str, str]] = {}
        self._callers: dict[str, dict[str, str]] = {}

    def base(self, port: int) -> dict[str, str]:
        """Every label of ``port``'s points but the source, the principals, the security
        policy and the response code (worked out once per port and reading)."""
        if port not in self._bases:
            host, svc, svc_ns = inbound_service(self.snapshot, self.identity.ip, port,
                                                self.identity.labels.get("app"))
            self._bases[port] = {
                "reporter": "destination", **self.me, "destination_service": host,
                "destination_service_name": svc, "destination_service_namespace": svc_ns,
                "request_protocol": _protocol_label(self.protocol(port))}
        return self._bases[port]

    def protocol(self, port: int) -> str:
        return self.protocols.get(port, "HTTP")

    def tcp_points(self, name: str, stat: InboundTcpStat, raw: RawStats) -> Iterator[Point]:
        """The ``istio_tcp_*`` counter one chain of an inbound TCP port gives. Over mutual
        TLS, per caller: the pod's own principal, the caller's from its certificate, and
        the caller's workload when one workload alone runs as that identity (Istio learns
        it by metadata exchange; here the certificate names the service account). The
        plaintext chain's callers are ``unknown``, as in Istio. Counters of the mutual TLS
        chain not split by caller (kept by proxies configured before) are left out."""
        metric = _TCP_CHAIN_METRICS.get(stat.stat)
        mtls = stat.policy == MUTUAL_TLS
        if metric is None or (mtls and stat.peer is None):
            return
        caller = (self.caller(stat.peer) if stat.peer is not None
                  else _side("source", "", "", {}, known=False))
        base = {**self.base(stat.port), **caller,
                "destination_principal": self.principal if mtls else UNKNOWN,
                "response_flags": "-", "connection_security_policy": stat.policy}
        yield Point(metric, _labels(base, TCP_LABEL_NAMES), name,
                    value=raw.counters.get(name, 0.0))

    def caller(self, peer: str) -> dict[str, str]:
        """The ``source_*`` labels of the caller whose certificate names ``peer``."""
        if peer not in self._callers:
            self._callers[peer] = _peer_side(peer, self.snapshot)
        return self._callers[peer]


_TCP_CHAIN_METRICS = MappingProxyType({
    "downstream_cx_total": TCP_OPENED, TCP_OPENED_STAT: TCP_OPENED,
    TCP_CLOSED_STAT: TCP_CLOSED,
    "downstream_cx_rx_bytes_total": TCP_RECEIVED, TCP_RECEIVED_STAT: TCP_RECEIVED,
    "downstream_cx_tx_bytes_total": TCP_SENT, TCP_SENT_STAT: TCP_SENT})
"""An inbound TCP chain's counters as Istio's destination-side series: bytes received
from the caller, bytes sent back to it, connections opened and closed."""


def _peer_side(peer: str, snapshot: MeshSnapshot) -> dict[str, str]:
    """The ``source_*`` labels of a caller known by its SPIFFE ID: its namespace and
    principal always; its workload, app and version when exactly one known source (a
    workload with a sidecar, or a built-in proxy) runs as that service account."""
    prefix = f"spiffe://{snapshot.trust_domain}/ns/"
    namespace, _, account = peer.removeprefix(prefix).partition("/sa/")
    if not peer.startswith(prefix) or not namespace or not account or "/" in namespace:
        return _side("source", "", "", {}, known=False)
    claims = [parse_counted(f"{s}|mtls") for s in index.of(snapshot).sources
              if source_identity(s) == (namespace, account)]
    sources = [c for c in claims if c is not None]
    if len(sources) == 1:
        (source,) = sources
        labels = {k: v for k, v in (("app", source.app), ("version", source.version))
                  if v != UNKNOWN}
        side = _side("source", source.workload, namespace, labels)
    else:
        side = {**_side("source", "", "", {}, known=False),
                "source_workload_namespace": namespace}
    side["source_principal"] = peer
    return side



def _inbound_points(name: str, inbound: _Inbound, raw: RawStats) -> Iterator[Point]:
    """The points of a stat of the inbound side that is not a cluster's: an HTTP port's
    counted requests, or a TCP port chain's connection counters; none for any other."""
    stat = split_inbound_stat(name)
    if stat is not None:
        yield from _counted_points(name, stat, inbound, raw)
        return
    tcp = split_inbound_tcp_stat(name)
    if tcp is not None:
        yield from inbound.tcp_points(name, tcp, raw)


def _counted_points(name: str, stat: InboundStat, inbound: _Inbound, raw: RawStats
                    ) -> Iterator[Point]:
    """The request count, or a duration or size histogram, of one counted source,
    response code and set of response flags."""
    base = {**inbound.base(stat.port),
            **_counted_side(stat.counted, inbound.snapshot.trust_domain, inbound.principal)}
    yield from _request_points(name, stat, base, True, raw)


def _counted_side(counted: str, trust_domain: str, own_principal: str) -> dict[str, str]:
    """The ``source_*`` labels, both principals and the security policy of a counted
    source: its source id, ``unknown`` for any other caller; over mTLS, the pod's own
    principal, and the caller's when its certificate proved its claim."""
    source = parse_counted(counted)
    if source is None:  # answered before a route was picked (a malformed request)
        return {**_side("source", "", "", {}, known=False),
                "destination_principal": UNKNOWN, "connection_security_policy": UNKNOWN}
    if source.workload == UNKNOWN:
        side = _side("source", "", "", {}, known=False)
    else:
        labels = {k: v for k, v in (("app", source.app), ("version", source.version))
                  if v != UNKNOWN}
        side = _side("source", source.workload, source.namespace, labels)
        side["source_principal"] = source.principal(trust_domain)
    return {**side,
            "destination_principal": own_principal if source.authenticated else UNKNOWN,
            "connection_security_policy": "mutual_tls" if source.authenticated else "none"}


_HISTOGRAMS = MappingProxyType({DURATION_STAT: REQUEST_DURATION,
                                REQUEST_BYTES_STAT: REQUEST_BYTES,
                                RESPONSE_BYTES_STAT: RESPONSE_BYTES})


def _request_points(name: str, stat: RequestStat, base: dict[str, str], grpc: bool,
                    raw: RawStats) -> Iterator[Point]:
    """The point of one request stat of a connection manager's logger: the counter of its
    code and flags (with its gRPC status where ``grpc``), or one of its histograms."""
    labels = {**base, "response_code": stat.code, "response_flags": stat.flags,
              "grpc_response_status": stat.grpc_status if grpc else ""}
    if stat.stat == REQUESTS_STAT:
        yield Point(REQUESTS_TOTAL, _labels(labels), name, value=raw.counters.get(name, 0.0))
        return
    metric = _HISTOGRAMS[stat.stat]
    hist = _hist(raw, name, metric)
    if hist is not None:
        yield Point(metric, _labels(labels), name, hist=hist)


_TCP_CLUSTER_METRICS = MappingProxyType({
    "upstream_cx_tx_bytes_total": TCP_RECEIVED, "upstream_cx_rx_bytes_total": TCP_SENT,
    "upstream_cx_total": TCP_OPENED, "upstream_cx_destroy": TCP_CLOSED})
"""A TCP service's outbound cluster counters as Istio's source-side series (bytes the
proxy sent upstream are what its destination received)."""


def _tcp_cluster_points(name: str, stat: str, base: dict[str, str], raw: RawStats
                        ) -> Iterator[Point]:
    metric = _TCP_CLUSTER_METRICS.get(stat)
    if metric is not None:
        yield Point(metric, _labels(base, TCP_LABEL_NAMES), name,
                    value=raw.counters.get(name, 0.0))
