"""``CONNECT`` tunnels to the TLS and HTTPS ports of hosts the mesh lists.

An app whose ``HTTPS_PROXY`` is its sidecar reaches ``https://api.example.com/`` by
sending ``CONNECT api.example.com:443`` and then its own TLS. Where the mesh lists the
host with a TLS or HTTPS port (a ServiceEntry, or a Service), the tunnel's vhost in the
host's route configuration sends it to that port's cluster, the entry's endpoints and
resolution, so it is counted as that service; elsewhere the outbound traffic policy
decides (:mod:`.egress`).

The bytes in the tunnel are the app's TLS, so nothing of an HTTP route can apply. A mesh
VirtualService's ``tls`` routes can: Istio matches them on the ClientHello's SNI, which an
HTTPS client takes from the host it connects to, the host the tunnel names. So the first
``tls`` route with a match that applies here (``port``, ``sourceLabels``,
``sourceNamespace``, ``gateways`` naming ``mesh``) and whose ``sniHosts`` cover the host
takes the tunnel to its destinations, split by weight. Matches on ``destinationSubnets``
never apply (there is no destination address here; MP2015 warns at apply), as at the
sidecar's TLS listeners (:mod:`.sidecar_tcp`).
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc

from meshpilot.api.hosts import host_matches
from meshpilot.api.networking import RouteDestination, TLSMatchAttributes, VirtualService
from meshpilot.mesh.model import Named
from meshpilot.xds.translate import egress, names
from meshpilot.xds.translate.matches import applies
from meshpilot.xds.translate.routes import Ctx, cluster_for

ROUTE_NAME = "tunnel"


def _takes(match: TLSMatchAttributes, vs_namespace: str, host: str, ctx: Ctx) -> bool:
    """Whether ``match`` takes a tunnel to ``host`` here."""
    if match.destination_subnets or getattr(match, "source_subnet", None):
        return False
    covered = any(host_matches(sni, host) for sni in match.sni_hosts)
    return covered and applies(match, vs_namespace, ctx.where)


def tls_route_for(vs: Named[VirtualService] | None, host: str, ctx: Ctx
                  ) -> list[RouteDestination] | None:
    """The destinations of the first ``tls`` route of ``vs`` that takes a tunnel to
    ``host`` here, or None."""
    if vs is None:
        return None
    return next((route.route for route in vs.obj.spec.tls if route.route
                 and any(_takes(m, vs.namespace, host, ctx) for m in route.match)), None)


def _route_to(action: rc.RouteAction, dests: list[RouteDestination], vs_namespace: str,
              ctx: Ctx) -> None:
    """``action`` sent to ``dests``: one cluster, or split by weight (weight 0 dropped,
    as for the sidecar's TLS listeners)."""
    kept = dests if len(dests) == 1 else [d for d in dests if (d.weight or 0) > 0]
    clusters = [cluster_for(d.destination, vs_namespace, ctx) for d in kept]
    if len(clusters) == 1:
        action.cluster = clusters[0]
        return
    action.ClearField("cluster")
    action.weighted_clusters.clusters.extend(
        rc.WeightedCluster.ClusterWeight(name=c, weight={"value": d.weight or 0})
        for c, d in zip(clusters, kept, strict=True))


def tunnel_vhost(host: str, spellings: list[str], vs: Named[VirtualService] | None,
                 ctx: Ctx) -> rc.VirtualHost:
    """The vhost of port ``ctx.where.port``: ``CONNECT`` to any spelling of the host at
    that port (a tunnel always names its port), to the service's own cluster or to the
    destinations of the ``tls`` route that takes it."""
    port = ctx.where.port
    route = egress.connect_route(ROUTE_NAME, names.outbound_cluster(port, None, host))
    dests = tls_route_for(vs, host, ctx)
    if dests is not None and vs is not None:
        _route_to(route.route, dests, vs.namespace, ctx)
    return rc.VirtualHost(name=names.vhost(host, port),
                          domains=[f"{s}:{port}" for s in spellings], routes=[route])
