"""Clusters: outbound (per service port, and per DestinationRule subset) and inbound.

Outbound discovery by ``MeshService.resolution``:

- ``EDS`` and ``STATIC``: an EDS cluster over ADS; its ClusterLoadAssignment lists
  the snapshot's endpoints (for STATIC, the addresses the ServiceEntry lists).
- ``DNS``: STRICT_DNS over the endpoints' addresses, or of the host itself when the
  ServiceEntry lists none, as Istio makes it: every address a name resolves to is an
  endpoint, balanced over, and the set follows the DNS answers.
- ``DNS_ROUND_ROBIN``: LOGICAL_DNS of its one endpoint or of the host, as Istio makes
  it: connections go to the first address the name resolves to and are kept when the
  DNS answer changes.

Every DNS-resolved cluster asks the mesh config's ``dnsResolvers`` when it names some
(:func:`~meshpilot.xds.translate.egress.dns_resolver`), as the passthrough's DNS cache
does, rather than the host's resolv.conf: one place says where the mesh's names are
looked up.
- ``NONE``: LOGICAL_DNS of the host (an HTTP proxy has no original destination).
  For a wildcard host (``*.example.com``, Istio's "Egress using Wildcard Hosts") the
  name each connection is for stands in for the original destination: a dynamic forward
  proxy cluster (:mod:`~meshpilot.xds.translate.passthrough`) resolves the request's
  host (HTTP) or the ClientHello's SNI (TLS, at the sidecar's TCP listener).

A wildcard host is otherwise a service only with addresses to send what it covers to
(STATIC, or DNS with endpoints): its clusters are named after the pattern.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import extension_pb2 as core_ext
from envoy.config.endpoint.v3 import endpoint_pb2

from meshpilot.api.networking import ClientTLSSettings, DestinationRule, TrafficPolicy
from meshpilot.mesh import index, sidecar_ingress
from meshpilot.mesh.index import destination_rule
from meshpilot.mesh.model import Endpoint, MeshService, MeshSnapshot, ProxyNode
from meshpilot.mesh.protocols import is_tcp
from meshpilot.xds.translate import (
    egress,
    endpoints,
    jwt,
    locality,
    names,
    passthrough,
    pb,
    tls,
)
from meshpilot.xds.translate.locality import Caller
from meshpilot.xds.translate.policy import HTTP_OPTIONS_KEY, apply_policy, effective_policy
from meshpilot.xds.translate.workload_security import endpoint_takes_mtls

Built = tuple[cluster_pb2.Cluster, endpoint_pb2.ClusterLoadAssignment | None]
"""A cluster and, for EDS clusters, the assignment to serve over EDS."""


def _h2(protocol: str) -> bool:
    return protocol in ("HTTP2", "GRPC")


def _dns_cluster(
    cluster: cluster_pb2.Cluster, addresses: list[tuple[str, int, int]], fallback: tuple[str, int],
    *, logical: bool, resolver: core_ext.TypedExtensionConfig | None = None,
) -> None:
    """``cluster`` resolving ``addresses`` (or the ``fallback`` name and port when there
    are none): STRICT_DNS, every address of every name an endpoint; or ``logical``,
    LOGICAL_DNS of the first name, connecting to the first address it resolves to."""
    addresses = addresses or [(fallback[0], fallback[1], 1)]
    if logical:
        cluster.type = cluster_pb2.Cluster.LOGICAL_DNS
        addresses = addresses[:1]
    else:
        cluster.type = cluster_pb2.Cluster.STRICT_DNS
    cluster.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
    if resolver is not None:
        cluster.typed_dns_resolver_config.CopyFrom(resolver)
    cluster.load_assignment.CopyFrom(endpoints.load_assignment(cluster.name, addresses))


def _one(
    snapshot: MeshSnapshot,
    service: MeshService,
    port: int,
    protocol: str,
    subset: str | None,
    labels: dict[str, str] | None,
    rule: DestinationRule | None,
    caller: Caller,
) -> Built:
    name = names.outbound_cluster(port, subset, service.host)
    cluster = cluster_pb2.Cluster(name=name)
    policy = effective_policy(rule, subset, port)
    apply_policy(cluster, policy, http2=_h2(protocol))
    tls.apply_upstream_tls(cluster, tls.upstream_tls(
        policy.tls if policy else None, sni=names.outbound_sni(port, subset, service.host),
        subject_alt_names=service_identities(snapshot, service),
        http2=_h2(protocol), auto_mtls=service.location != "MESH_EXTERNAL"))
    chosen = endpoints.select(snapshot, service.host, port, labels)
    if passthrough.is_passthrough(service):
        passthrough.as_forward_proxy(cluster, snapshot.mesh_config)
        return cluster, None
    if service.resolution in ("DNS", "DNS_ROUND_ROBIN", "NONE"):
        addresses = [(e.address, e.port, e.weight) for e in chosen]
        _dns_cluster(cluster, addresses, (service.host, port),
                     logical=service.resolution != "DNS",
                     resolver=egress.dns_resolver(snapshot.mesh_config))
        if cluster.type == cluster_pb2.Cluster.STRICT_DNS and any(e.locality for e in chosen):
            _localities(cluster, chosen, caller, policy)
        return cluster, None
    cluster.type = cluster_pb2.Cluster.EDS
    cluster.eds_cluster_config.eds_config.CopyFrom(pb.ads_source())
    cluster.eds_cluster_config.service_name = name
    assignment, members = endpoints.assignment_for(
        name, chosen, lambda e: endpoint_takes_mtls(snapshot, e))
    if locality.apply(assignment, members, caller, policy):
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()
    return cluster, assignment


def _localities(cluster: cluster_pb2.Cluster, chosen: list[Endpoint], caller: Caller,
                policy: TrafficPolicy | None) -> None:
    """A STRICT_DNS cluster's named endpoints grouped by their localities, with the
    priorities and weights the policy gives them (as Istio does for DNS entries)."""
    assignment, members = locality.assignment(cluster.name, chosen)
    if locality.apply(assignment, members, caller, policy):
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()
    cluster.load_assignment.CopyFrom(assignment)


def service_identities(snapshot: MeshSnapshot, service: MeshService) -> list[str]:
    """The SPIFFE IDs of the service's workloads with a sidecar: what a client checks the
    server's certificate against (Istio's service accounts of a service)."""
    accounts = {(e.namespace, e.service_account)
                for e in snapshot.endpoints.get(service.host, ())
                if e.has_sidecar and e.service_account}
    return [f"spiffe://{snapshot.trust_domain}/ns/{ns}/sa/{sa}" for ns, sa in sorted(accounts)]


def outbound(snapshot: MeshSnapshot, node: ProxyNode) -> Iterator[Built]:
    """Every outbound cluster for ``node`` (of the services exported to its namespace),
    in host, port, subset order."""
    services = index.visible_services(snapshot, node)
    for host in sorted(services):
        service = services[host]
        yield from for_service(snapshot, service, destination_rule(snapshot, host, node),
                               locality.caller_of(node))


def for_service(
    snapshot: MeshSnapshot, service: MeshService, rule: DestinationRule | None,
    caller: Caller | None = None,
) -> list[Built]:
    """The clusters of one service under ``rule``: per port, the plain one then subsets.

    Depends only on the service, its endpoints, the rule and, where the rule balances by
    locality, the ``caller`` (:mod:`~meshpilot.xds.translate.locality`), so it is shared
    by every proxy for which :func:`~meshpilot.mesh.index.destination_rule` picks that
    rule (and, there, that sees the endpoints from the same place).
    """
    caller = caller or Caller()
    subsets = rule.spec.subsets if rule else []
    out: list[Built] = []
    for sp in sorted(service.ports, key=lambda p: p.port):
        out.append(_one(snapshot, service, sp.port, sp.protocol, None, None, rule, caller))
        for subset in subsets:
            out.append(_one(snapshot, service, sp.port, sp.protocol, subset.name,
                            subset.labels, rule, caller))
    return out


def _inbound_http2(protocol: str) -> bool | None:
    """How the sidecar speaks to its app on a port: HTTP/2 when the container port's
    name says HTTP2 or GRPC; otherwise in the protocol the request arrived in.

    Why not HTTP/1.1 for the rest: the protocol that counts is the Service port's (its
    ``appProtocol`` or name, as Istio selects it), which the *calling* sidecar reads and
    speaks (HTTP/2 over mTLS, ALPN ``h2``); the pod's sidecar knows only its container
    ports, whose names need not say anything. Following the caller carries that choice
    to the app: a gRPC call stays HTTP/2, an HTTP/1.1 request stays HTTP/1.1 (what Istio
    does for a port whose protocol it does not know)."""
    return True if _h2(protocol) else None


def inbound(node: ProxyNode) -> Iterator[cluster_pb2.Cluster]:
    """``inbound|PORT||``: a STATIC cluster to the app behind the sidecar, at
    ``POD_IP:app_port`` (the app's own address when it has one, see
    :attr:`ProxyNode.app_ip`) or at the unix socket its Sidecar's ingress listener names, with
    the circuit breakers of the Sidecar's connection pool for the port, if any
    (:mod:`meshpilot.mesh.sidecar_ingress`)."""
    for port in sorted(node.inbound, key=lambda p: p.container_port):
        name = names.inbound_cluster(port.container_port)
        cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.STATIC)
        said = sidecar_ingress.setting(node, port.container_port)
        pool = said.pool if said is not None else None
        apply_policy(cluster, TrafficPolicy(connection_pool=pool) if pool else None,
                     http2=_inbound_http2(port.protocol))
        if is_tcp(port.protocol):
            del cluster.typed_extension_protocol_options[HTTP_OPTIONS_KEY]
        cluster.lb_policy = cluster_pb2.Cluster.ROUND_ROBIN
        if said is not None and said.unix_path:
            cluster.load_assignment.CopyFrom(endpoints.pipe_assignment(name, said.unix_path))
        else:
            cluster.load_assignment.CopyFrom(
                endpoints.load_assignment(name, [(node.app_ip or node.ip, port.app_port, 1)]))
        yield cluster


JWKS_CONNECT_TIMEOUT = "5s"


def jwks(rules: Iterable[jwt.JwtRule], resolver: core_ext.TypedExtensionConfig | None = None
         ) -> Iterator[cluster_pb2.Cluster]:
    """The clusters through which the workload's Envoy fetches its ``jwksUri`` keys, one
    per name the JWT filter gives (scheme, host and port): LOGICAL_DNS of the host (asking
    ``resolver``, the mesh's, when given), and for ``https`` TLS verified against the
    system roots with the host as SNI."""
    seen: set[str] = set()
    for rule in rules:
        if not (rule.jwks_uri and rule.jwks_cluster) or rule.jwks_cluster in seen:
            continue
        seen.add(rule.jwks_cluster)
        parts = urlsplit(rule.jwks_uri)
        secure = parts.scheme == "https"
        host = parts.hostname or ""
        cluster = cluster_pb2.Cluster(name=rule.jwks_cluster,
                                      connect_timeout=pb.duration(JWKS_CONNECT_TIMEOUT))
        _dns_cluster(cluster, [], (host, parts.port or (443 if secure else 80)), logical=True,
                     resolver=resolver)
        if secure:
            tls.apply_upstream_tls(cluster, tls.upstream_tls(
                ClientTLSSettings(mode="SIMPLE", sni=host), sni=host, subject_alt_names=()))
        yield cluster
