"""Requests for hosts outside the registry: Istio's ``outboundTrafficPolicy``.

The sidecar's outbound routes are scoped by request host (SRDS), and Envoy has no
fallback scope: a host no routing scope is keyed by gets no route at all. So the outbound
connection manager runs a small Lua filter first, :data:`POLICY_FILTER`, behind a native
matcher holding the class's scope keys (every host spelling the sidecar routes, each at
the ports its route config routes; see :mod:`.egress_matcher`), which skips Lua for them.
A request whose host (up to the first ``:``, as the scope key is read) is not one of them,
or is one at a port it is not routed at (Istio sends a known host's other ports to the
same passthrough or blackhole route as an unknown host), reaches Lua, which keeps its
authority in :data:`AUTHORITY_HEADER` and gives it the fixed authority of the mode's scope
and a cleared route cache, so Envoy picks the scope again:

- ``ALLOW_ANY``: scope :data:`PASSTHROUGH_KEY`, route ``allow_any`` to
  ``PassthroughCluster``, a dynamic forward proxy cluster: the dynamic forward proxy filter
  (:data:`PASSTHROUGH_FILTER`) puts the original authority back and resolves it with a DNS
  cache (asking ``dnsResolvers`` when the mesh config names them), so the request reaches
  the host its URL names. A name that does not resolve is answered 404 (nowhere to be
  found), as before there was a policy.
- ``REGISTRY_ONLY``: scope :data:`BLACKHOLE_KEY`, route ``block_all`` to
  ``BlackHoleCluster`` (STATIC, no endpoints), whose "no healthy upstream" the connection
  manager answers 502, as Istio does.

HTTPS goes the same way: an app whose ``HTTPS_PROXY`` is its sidecar sends ``CONNECT
host:port``, which the outbound connection manager accepts as an upgrade. The policy
filter judges its authority as any other; each policy route config has a tunnel route
(:func:`connect_route`) beside its catch-all, ending the tunnel at the sidecar and
forwarding the app's TLS as it is: through the dynamic forward proxy to the port the
tunnel names (``ALLOW_ANY``), or to ``BlackHoleCluster``'s 502. A host the mesh lists
with a TLS or HTTPS port has its own tunnel route (:mod:`.tunnels`).

Why the filter's configuration comes over ECDS (an extension config resource the listener
names, :data:`~meshpilot.xds.types.EXTENSION_CONFIG`): the set of known hosts changes when
services come and go, never when routes change, so a weight change sends what it sent
before (one route config) and a new service sends one more resource per class of proxy,
without replacing (and so draining) any listener. The per-workload mode (a Sidecar's
``outboundTrafficPolicy``) is part of the same resource. The scopes, route configs and
clusters of the policy are the same for every sidecar in every mode.

Where the sidecar knows wildcard hosts, the routing scope is keyed by the header
:data:`~meshpilot.xds.translate.wildcards.SCOPE_HEADER` (the host, or the pattern that
covers it): the matcher judges that key too, so a covered name counts as known, and the
filter re-keys an unknown host's request there too.

A client cannot pick a target by sending :data:`AUTHORITY_HEADER` itself: the early header
mutation removes it from every request before anything reads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, resolver_pb2
from envoy.config.core.v3 import extension_pb2 as core_ext
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2, scoped_route_pb2
from envoy.extensions.clusters.dynamic_forward_proxy.v3 import cluster_pb2 as dfp_cluster
from envoy.extensions.common.dynamic_forward_proxy.v3 import dns_cache_pb2
from envoy.extensions.filters.http.dynamic_forward_proxy.v3 import (
    dynamic_forward_proxy_pb2 as dfp_filter,
)
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.network.dns_resolver.cares.v3 import cares_dns_resolver_pb2 as cares
from envoy.type.matcher.v3 import string_pb2

from meshpilot.api.hosts import CLUSTER_DOMAIN
from meshpilot.api.mesh_config import (
    BLACKHOLE_CLUSTER,
    PASSTHROUGH_CLUSTER,
    REGISTRY_ONLY,
    DnsResolver,
    MeshConfig,
    OutboundMode,
)
from meshpilot.mesh import index
from meshpilot.mesh.model import MeshSnapshot, ProxyNode
from meshpilot.xds.translate import egress_matcher, pb
from meshpilot.xds.translate.wildcards import SCOPE_HEADER

POLICY_FILTER = "mp.outbound_traffic_policy"
"""The Lua filter's name, and the name of its ECDS resource."""
PASSTHROUGH_FILTER = "mp.passthrough"
"""The dynamic forward proxy filter's name, and the name of its ECDS resource."""
PASSTHROUGH_KEY = "allow-any.outbound-traffic-policy.meshpilot"
BLACKHOLE_KEY = "registry-only.outbound-traffic-policy.meshpilot"
"""The authorities (and routing scope keys) a request for an unknown host is given."""
POLICY_SCOPES = frozenset({PASSTHROUGH_KEY, BLACKHOLE_KEY})
PASSTHROUGH_ROUTE = "allow_any"
BLACKHOLE_ROUTE = "block_all"
AUTHORITY_HEADER = "x-meshpilot-authority"
DNS_CACHE = "passthrough"
CONNECT = "CONNECT"
"""The upgrade the outbound connection manager accepts (an HTTPS_PROXY client's tunnel)."""
CONNECT_TIMEOUT = "10s"  # Istio's default connectTimeout
TUNNEL_IDLE_TIMEOUT = "3600s"  # Istio's default idle timeout of a TCP connection
MAX_HOSTS = 1024  # Envoy's default bound of the DNS cache
_SERVICE_SUFFIX = f".{CLUSTER_DOMAIN}"
_POLICY_TYPE = ("type.googleapis.com/envoy.extensions.common.matching.v3."
                "ExtensionWithMatcher")
_DFP_TYPE = ("type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3."
             "FilterConfig")

_LUA = """\
function envoy_on_request(handle)
  local headers = handle:headers()
  headers:replace("{header}", headers:get(":authority") or "")
  headers:replace(":authority", "{scope}")
  if headers:get("{scope_header}") then
    headers:replace("{scope_header}", "{scope}")
  end
  handle:clearRouteCache()
end
"""
"""What the Lua filter does to every request it sees: only those for unknown hosts reach
it (:mod:`.egress_matcher` decides first)."""


def outbound_mode(snapshot: MeshSnapshot, node: ProxyNode) -> OutboundMode:
    """The mode for ``node``: its Sidecar's ``outboundTrafficPolicy`` when it has one
    (as Istio, a policy without a mode is ``REGISTRY_ONLY``, the mode enum's zero value),
    else the mesh config's."""
    return outbound_policy(snapshot, node)[0]


def outbound_policy(snapshot: MeshSnapshot, node: ProxyNode) -> tuple[OutboundMode, str]:
    """:func:`outbound_mode`, and where it comes from (``Sidecar NS/NAME`` or ``mesh
    config``), for ``describe pod``."""
    if node.kind != "gateway":
        found = index.of(snapshot).sidecar_for(node.namespace, node.labels)
        policy = found.obj.spec.outbound_traffic_policy if found is not None else None
        if found is not None and policy is not None:
            return policy.mode or REGISTRY_ONLY, f"Sidecar {found.namespace}/{found.name}"
    return snapshot.mesh_config.outbound_mode, "mesh config"


# --- the listener's side: the same for every sidecar, whatever the mode ---------------------

def _discovered(name: str, type_url: str) -> hcm.HttpFilter:
    source = config_source_pb2.ExtensionConfigSource(config_source=pb.ads_source(),
                                                     type_urls=[type_url])
    return hcm.HttpFilter(name=name, config_discovery=source)


def listener_filters() -> tuple[hcm.HttpFilter, hcm.HttpFilter]:
    """(the policy filter, first in the chain; the passthrough filter, before the router).
    The passthrough filter is in every request's chain: Envoy fixes the chain from the
    route found before the policy filter re-routes. On a mesh route it only sees that the
    route's cluster is not a dynamic forward proxy one, and lets the request go on."""
    return _discovered(POLICY_FILTER, _POLICY_TYPE), _discovered(PASSTHROUGH_FILTER, _DFP_TYPE)


def _flag(*flags: str) -> accesslog_pb2.AccessLogFilter:
    return accesslog_pb2.AccessLogFilter(
        response_flag_filter=accesslog_pb2.ResponseFlagFilter(flags=list(flags)))


def _authority_is(key: str) -> accesslog_pb2.AccessLogFilter:
    return accesslog_pb2.AccessLogFilter(header_filter=accesslog_pb2.HeaderFilter(
        header=rc.HeaderMatcher(name=":authority",
                                string_match=string_pb2.StringMatcher(exact=key))))


def _body(text: str) -> base_pb2.DataSource:
    return base_pb2.DataSource(inline_string=text)


def local_replies() -> hcm.LocalReplyConfig:
    """BlackHoleCluster's "no healthy upstream" (UH on its scope only) → 502; a
    passthrough host whose name does not resolve (DF) → 404."""
    blackholed = accesslog_pb2.AccessLogFilter(and_filter=accesslog_pb2.AndFilter(
        filters=[_flag("UH"), _authority_is(BLACKHOLE_KEY)]))
    return hcm.LocalReplyConfig(mappers=[
        hcm.ResponseMapper(
            filter=blackholed, status_code=pb.u32(502),
            body=_body(f"{BLACKHOLE_CLUSTER}: the host is not in the mesh registry "
                       "(outboundTrafficPolicy REGISTRY_ONLY)\n")),
        hcm.ResponseMapper(
            filter=_flag("DF"), status_code=pb.u32(404),
            body=_body(f"{PASSTHROUGH_CLUSTER}: the host is not in the mesh registry and "
                       "its name does not resolve\n")),
    ])


def stripped_headers() -> list[str]:
    """Headers the early header mutation removes from every outbound request."""
    return [AUTHORITY_HEADER]


# --- the class's side: ECDS, clusters, scopes, route configs --------------------------------

Known = Mapping[str, tuple[str, ...]] | Iterable[str]
"""The scope keys a class routes: each with the suffixes its route config routes it at
(:func:`~meshpilot.xds.translate.vhosts.port_suffixes`), or, written as a bare list,
at any port."""


def _groups(known: Known) -> list[egress_matcher.KeyGroup]:
    """The keys grouped by their suffixes, each group encoded by :func:`encode_keys`."""
    by_suffixes: dict[tuple[str, ...] | None, list[str]] = {}
    for key in known:
        suffixes = known[key] if isinstance(known, Mapping) else None
        by_suffixes.setdefault(suffixes, []).append(key)
    return [(*encode_keys(keys), suffixes)  # type: ignore[misc]
            for suffixes, keys in sorted(by_suffixes.items(), key=lambda i: i[0] or ())]


def policy_filter(known: Known, mode: OutboundMode) -> core_ext.TypedExtensionConfig:
    """The policy filter's ECDS resource: the Lua filter sending a request to ``mode``'s
    scope, behind a matcher that skips it for the ``known`` scope keys at the ports they
    are routed at."""
    scope = BLACKHOLE_KEY if mode == REGISTRY_ONLY else PASSTHROUGH_KEY
    source = _LUA.format(header=AUTHORITY_HEADER, scope=scope, scope_header=SCOPE_HEADER)
    lua = core_ext.TypedExtensionConfig(name=POLICY_FILTER, typed_config=pb.pack(
        lua_pb2.Lua(default_source_code=base_pb2.DataSource(inline_string=source))))
    wrapped = egress_matcher.skip_known(lua, _groups(known), SCOPE_HEADER)
    return core_ext.TypedExtensionConfig(name=POLICY_FILTER, typed_config=pb.pack(wrapped))


def encode_keys(known: Iterable[str]) -> tuple[list[str], list[str]]:
    """(keys written as they are, ``name.namespace`` bases standing for three keys each:
    the base, ``.svc`` and ``.svc.cluster.local`` after it). Lossless: a base is used only
    when all three of its keys are known, so the filter's set is exactly ``known``
    (without the keys :func:`_plain` leaves out); a 1,000-service mesh's set is about a
    third of its size written out."""
    keys = {k for k in known if _plain(k)}
    services = sorted(base for k in keys if k.endswith(_SERVICE_SUFFIX)
                      and (base := k[:-len(_SERVICE_SUFFIX)]) in keys
                      and f"{base}.svc" in keys)
    covered = {k for b in services for k in (b, f"{b}.svc", f"{b}{_SERVICE_SUFFIX}")}
    return sorted(keys - covered), services


def _plain(key: str) -> bool:
    """A scope key that can be written into the Lua string as it is (host spellings are
    DNS names; anything else is left out, so never mistaken for code)."""
    return bool(key) and all(c.isalnum() or c in "-._*" for c in key)


def dns_resolver(config: MeshConfig) -> core_ext.TypedExtensionConfig | None:
    """The resolver every name the sidecar looks up is asked with: the mesh config's
    ``dnsResolvers`` when it names some (c-ares, only those servers, no search domain:
    the names are asked as written), else None (Envoy's default, the host's
    resolv.conf). Shared by the DNS cache below and by every DNS-resolved cluster
    (:mod:`~meshpilot.xds.translate.clusters`), so no lookup of the mesh's goes
    elsewhere than where the mesh config says."""
    return resolver_of(config.dns_resolvers)


def resolver_of(servers: Iterable[DnsResolver]) -> core_ext.TypedExtensionConfig | None:
    """:func:`dns_resolver` of the ``servers`` named (None for none)."""
    addresses = [address_pb2.Address(socket_address=address_pb2.SocketAddress(
        address=r.address, port_value=r.port)) for r in servers]
    if not addresses:
        return None
    resolvers = cares.CaresDnsResolverConfig(
        resolvers=addresses,
        dns_resolver_options=resolver_pb2.DnsResolverOptions(no_default_search_domain=True))
    return core_ext.TypedExtensionConfig(name="envoy.network.dns_resolver.cares",
                                         typed_config=pb.pack(resolvers))


def _dns_cache(config: MeshConfig) -> dns_cache_pb2.DnsCacheConfig:
    """One cache, the same in the filter and the cluster (Envoy requires it): IPv4 first
    as every other cluster here, bounded, asking the mesh config's resolvers only when it
    names some (else the host's resolv.conf)."""
    cache = dns_cache_pb2.DnsCacheConfig(
        name=DNS_CACHE, dns_lookup_family=cluster_pb2.Cluster.V4_PREFERRED,
        max_hosts=pb.u32(MAX_HOSTS))
    resolver = dns_resolver(config)
    if resolver is not None:
        cache.typed_dns_resolver_config.CopyFrom(resolver)
    return cache


def passthrough_filter(config: MeshConfig) -> core_ext.TypedExtensionConfig:
    """The dynamic forward proxy filter's ECDS resource: it takes the original authority
    back from :data:`AUTHORITY_HEADER` on the ``allow_any`` route (per-route config)."""
    filter_config = dfp_filter.FilterConfig(dns_cache_config=_dns_cache(config))
    return core_ext.TypedExtensionConfig(name=PASSTHROUGH_FILTER,
                                         typed_config=pb.pack(filter_config))


def extension_configs(known: Known, mode: OutboundMode, config: MeshConfig
                      ) -> list[core_ext.TypedExtensionConfig]:
    return [policy_filter(known, mode), passthrough_filter(config)]


def passthrough_cluster(config: MeshConfig) -> cluster_pb2.Cluster:
    """``PassthroughCluster``: the host each request names, resolved by the DNS cache."""
    cluster = cluster_pb2.Cluster(
        name=PASSTHROUGH_CLUSTER, connect_timeout=pb.duration(CONNECT_TIMEOUT),
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED)
    cluster.cluster_type.CopyFrom(cluster_pb2.Cluster.CustomClusterType(
        name="envoy.clusters.dynamic_forward_proxy",
        typed_config=pb.pack(dfp_cluster.ClusterConfig(dns_cache_config=_dns_cache(config)))))
    return cluster


def blackhole_cluster() -> cluster_pb2.Cluster:
    """``BlackHoleCluster``: no endpoints, so every request to it is refused."""
    cluster = cluster_pb2.Cluster(
        name=BLACKHOLE_CLUSTER, type=cluster_pb2.Cluster.STATIC,
        connect_timeout=pb.duration(CONNECT_TIMEOUT))
    cluster.load_assignment.CopyFrom(
        endpoint_pb2.ClusterLoadAssignment(cluster_name=BLACKHOLE_CLUSTER))
    return cluster


def clusters(config: MeshConfig) -> list[cluster_pb2.Cluster]:
    """Both, in every mode (as Istio): a mode switch changes one ECDS resource only."""
    return [blackhole_cluster(), passthrough_cluster(config)]


def connect_route(name: str, cluster: str) -> rc.Route:
    """A route for ``CONNECT`` requests (what an app sends through ``HTTPS_PROXY``) to
    ``cluster``, ending the tunnel at the sidecar: the request's headers go nowhere, the
    bytes after them (the app's own TLS) are forwarded to the cluster's host as they
    are. Envoy matches a CONNECT only with a route like this one (it has no path). A
    tunnel is a connection, so it may sit idle as long as Istio lets a TCP connection
    (an hour), not as long as an HTTP stream (Envoy's five minutes)."""
    return rc.Route(name=name, match=rc.RouteMatch(connect_matcher=rc.RouteMatch.ConnectMatcher()),
                    route=rc.RouteAction(cluster=cluster, timeout=pb.duration("0s"),
                                         idle_timeout=pb.duration(TUNNEL_IDLE_TIMEOUT),
                                         upgrade_configs=[_terminated_connect()]))


def _terminated_connect() -> rc.RouteAction.UpgradeConfig:
    return rc.RouteAction.UpgradeConfig(
        upgrade_type=CONNECT, connect_config=rc.RouteAction.UpgradeConfig.ConnectConfig())


def route_configs() -> list[route_pb2.RouteConfiguration]:
    """``allow_any`` and ``block_all``: a tunnel route (``CONNECT``) and a catch-all
    route each."""
    passthrough = rc.Route(
        name=PASSTHROUGH_ROUTE, match=rc.RouteMatch(prefix="/"),
        route=rc.RouteAction(cluster=PASSTHROUGH_CLUSTER, timeout=pb.duration("0s")),
        request_headers_to_remove=[AUTHORITY_HEADER])
    tunnel = connect_route(PASSTHROUGH_ROUTE, PASSTHROUGH_CLUSTER)
    for route in (passthrough, tunnel):
        route.typed_per_filter_config[PASSTHROUGH_FILTER].CopyFrom(pb.pack(
            dfp_filter.PerRouteConfig(host_rewrite_header=AUTHORITY_HEADER)))
    blocked = rc.Route(name=BLACKHOLE_ROUTE, match=rc.RouteMatch(prefix="/"),
                       route=rc.RouteAction(cluster=BLACKHOLE_CLUSTER))
    return [route_pb2.RouteConfiguration(name=routes[0].name, virtual_hosts=[
        rc.VirtualHost(name=routes[0].name, domains=["*"], routes=list(routes))])
        for routes in ((tunnel, passthrough),
                       (connect_route(BLACKHOLE_ROUTE, BLACKHOLE_CLUSTER), blocked))]


def scopes() -> list[scoped_route_pb2.ScopedRouteConfiguration]:
    """The two policy scopes, keyed by the authority the policy filter sets."""
    key = scoped_route_pb2.ScopedRouteConfiguration.Key
    return [scoped_route_pb2.ScopedRouteConfiguration(
        name=scope, route_configuration_name=route,
        key=key(fragments=[key.Fragment(string_key=scope)]))
        for scope, route in ((PASSTHROUGH_KEY, PASSTHROUGH_ROUTE),
                             (BLACKHOLE_KEY, BLACKHOLE_ROUTE))]
