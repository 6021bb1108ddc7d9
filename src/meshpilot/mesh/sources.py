"""How the mesh names a calling workload: the source id its sidecar sends, and telemetry reads.

Envoy's stats know the upstream cluster a client called, but not who called a server.
So every outbound request carries the caller's *source id*
``<workload>|<namespace>|<app>|<version>|<service account>`` in :data:`SOURCE_HEADER`
(set by the caller's sidecar, overwriting anything the app sent), and the inbound side
sorts every request into one *counted source*, named :func:`counted_name`: a known
source id as *authenticated* when the connection was mutual TLS and its peer certificate
names that very service account, or as *plaintext* when there was no certificate. A
caller claiming another's source id over mTLS, or a source the mesh does not know (yet),
is counted as :data:`UNKNOWN_SOURCE`, still telling mTLS from plaintext.

Every request the inbound sidecar answers is counted, whoever answered it: the app
through the router, or the sidecar itself (an AuthorizationPolicy's 403, a
RequestAuthentication's 401). Per inbound port, under :func:`inbound_stat_prefix`
(``meshpilot.inbound_8080``), Envoy keeps the counters
``<prefix>.requests.response_code.<code>.response_flags.<flags>.source.<counted source>``
and the histograms ``<prefix>.request_duration`` (and ``.request_bytes``,
``.response_bytes``) with the same tags. The xDS translation writes the
header, the sorting and the counters; telemetry reads the counts back into Istio's
``source_*`` labels, ``source_principal`` and ``connection_security_policy``. Both use
the encoding defined here, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from meshpilot.mesh.model import Endpoint, ProxyNode

SOURCE_HEADER = "x-meshpilot-source"
UNKNOWN = "unknown"
UNKNOWN_SOURCE = "|".join((UNKNOWN,) * 5)
"""The source id of every caller that is not a known source (or not proved to be one)."""
AUTHENTICATED = "mtls"
PLAINTEXT = "none"
"""The last part of a counted source's name: how its requests arrived."""
MESH_PROXY_SOURCE = ("mesh-proxy", "default", "mesh-client", UNKNOWN, "default")
GATEWAY_SERVICE_ACCOUNT = "istio-ingressgateway-service-account"
GATEWAY_SOURCE = ("istio-ingressgateway", "istio-system", "istio-ingressgateway", UNKNOWN,
                  GATEWAY_SERVICE_ACCOUNT)
"""The built-in proxies (the control plane starts them with these names and identities)."""


class Source(NamedTuple):
    """A counted source: who claims to call, and whether a certificate proved it."""

    workload: str
    namespace: str
    app: str
    version: str
    service_account: str
    authenticated: bool

    def principal(self, trust_domain: str) -> str:
        """The caller's SPIFFE ID, when its certificate proved it; else ``unknown``."""
        if not self.authenticated or self.service_account == UNKNOWN:
            return UNKNOWN
        return spiffe_id(trust_domain, self.namespace, self.service_account)


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def source_id(workload: str, namespace: str, labels: Mapping[str, str],
              service_account: str = "") -> str:
    """The header value naming one source workload."""
    return "|".join((workload or UNKNOWN, namespace or UNKNOWN,
                     labels.get("app") or UNKNOWN, labels.get("version") or UNKNOWN,
                     service_account or UNKNOWN))


def counted_name(source: str, authenticated: bool) -> str:
    """The counted source of a source id's requests, over mTLS or not (the name of the
    inbound route that sorts them, and of their counters)."""
    return f"{source}|{AUTHENTICATED if authenticated else PLAINTEXT}"


def parse_counted(value: str) -> Source | None:
    """A counter name back into its source; None if not one of ours."""
    parts = value.split("|")
    if len(parts) != 6 or parts[5] not in (AUTHENTICATED, PLAINTEXT):
        return None
    return Source(*parts[:5], authenticated=parts[5] == AUTHENTICATED)


INBOUND_STATS = "meshpilot.inbound_"
REQUESTS_STAT = "requests"
DURATION_STAT = "request_duration"
REQUEST_BYTES_STAT = "request_bytes"
RESPONSE_BYTES_STAT = "response_bytes"
CODE_TAG = "response_code"
FLAGS_TAG = "response_flags"
GRPC_TAG = "grpc_status"
SOURCE_TAG = "source"
"""The inbound counters' and histograms' names, and their tags (Envoy writes a tag into
the name as ``.<tag>.<value>``; the source comes last because a source id may contain
dots): the response code, Envoy's response flags (``-``, ``UH``, ``UT,URX``...), then,
on a gRPC port's request counters only, the response's gRPC status (a number), then the
source."""

OUTBOUND_STATS = "meshpilot.outbound."
CLUSTER_TAG = "cluster"
"""Where every outbound connection manager (sidecars, the mesh proxy, gateways) counts
its requests: the same stat names and tags as the inbound side, the last tag being the
upstream cluster the request was routed to (``-`` when none was: no route) instead of
the source; the request counters always carry the gRPC status."""


RETRY_ON_PRIMARY = "retry_on_primary"
"""The first part of a retry-on-primary aggregate cluster's name,
``retry_on_primary|<canary cluster>|<primary cluster>`` (each member an
``outbound|PORT|SUBSET|HOST`` name). A proxy holding such clusters counts the requests
routed to one twice: under the aggregate's name, as every request, and under that name
followed by ``|<address:port>`` of the upstream host that gave the final answer
(``-`` when none did), which tells the member that answered."""


def retry_aggregate(cluster: str) -> tuple[str, str] | None:
    """(canary cluster, primary cluster) of an aggregate's name; None for other names."""
    parts = cluster.split("|")
    if len(parts) != 9 or parts[0] != RETRY_ON_PRIMARY:
        return None
    return "|".join(parts[1:5]), "|".join(parts[5:9])


def answered_by(cluster: str) -> tuple[str, str] | None:
    """(aggregate's name, ``address:port`` of the host that answered) of an outbound
    count's cluster tag naming both; None for any other tag."""
    aggregate, _, host = cluster.rpartition("|")
    return (aggregate, host) if retry_aggregate(aggregate) is not None else None


def inbound_stat_prefix(container_port: int) -> str:
    """Where the counters of one inbound port live (``meshpilot.inbound_8080``)."""
    return f"{INBOUND_STATS}{container_port}"


TCP_STATS = "tcp.inbound_"
"""Where Envoy roots the tcp_proxy stats of an inbound TCP port's chains
(``tcp.<stat_prefix>.``, the prefix being :func:`inbound_tcp_stat_prefix`)."""
MUTUAL_TLS = "mutual_tls"
NO_TLS = "none"
TCP_CLOSED_STAT = "connections_closed"
"""An inbound TCP port keeps its connections apart by how they arrived, the chain that
took them: ``mutual_tls`` or ``none`` (Istio's ``connection_security_policy``). Envoy's
tcp_proxy counts the connections opened and the bytes of each chain; their closes are
counted by the chain's stats access logger (a TCP access log is written when the
connection closes) as ``meshpilot.inbound_<port>.<policy>.connections_closed``."""


TCP_OPENED_STAT = "connections_opened"
TCP_RECEIVED_STAT = "received_bytes"
TCP_SENT_STAT = "sent_bytes"
PEER_TAG = "peer"
"""The mutual TLS chain of an inbound TCP port counts by caller instead: its stats
access loggers count ``connections_opened`` when the upstream connects, and
``connections_closed``, ``received_bytes`` and ``sent_bytes`` when the connection ends,
each tagged with the caller's certificate's SPIFFE ID
(``meshpilot.inbound_9000.mutual_tls.connections_opened.peer.spiffe://...``); its
tcp_proxy's own counters are not kept."""


def inbound_tcp_stat_prefix(container_port: int, mtls: bool) -> str:
    """The tcp_proxy ``stat_prefix`` of one chain of an inbound TCP port
    (``inbound_9000.mutual_tls``), and the scope of its close counter under
    ``meshpilot.``."""
    return f"inbound_{container_port}.{MUTUAL_TLS if mtls else NO_TLS}"


def source_identity(source: str) -> tuple[str, str]:
    """(namespace, service account) a source id claims."""
    parts = source.split("|")
    return (parts[1], parts[4]) if len(parts) == 5 else (UNKNOWN, UNKNOWN)


def node_source_id(node: ProxyNode) -> str:
    """The source id a proxy's requests carry."""
    return source_id(node.workload or node.kind, node.namespace, node.labels,
                     node.service_account)


def known_sources(endpoints: Iterable[tuple[Endpoint, ...]]) -> tuple[str, ...]:
    """The source ids of the built-in proxies and of every workload with a sidecar behind
    ``endpoints`` (per service), sorted."""
    out = {"|".join(MESH_PROXY_SOURCE), "|".join(GATEWAY_SOURCE)}
    for group in endpoints:
        for ep in group:
            if ep.workload and ep.has_sidecar:
                out.add(source_id(ep.workload, ep.namespace, ep.labels, ep.service_account))
    return tuple(sorted(out))
