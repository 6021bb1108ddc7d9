"""The outbound traffic policy in the xDS build (hosts outside the registry).

Follows Istio's ``outboundTrafficPolicy`` (meshConfig and the Sidecar resource, istio.io
"Accessing External Services"): ALLOW_ANY by default; a Sidecar's policy replaces the
mesh's for the workloads it selects, and a policy written without a mode is
REGISTRY_ONLY (the zero of Istio's mode enum, which is what istiod reads it as). What
changes with the mode or the services is one ECDS resource per proxy class; a weight
change leaves every set but one route config the very same object.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.clusters.dynamic_forward_proxy.v3 import cluster_pb2 as dfp_cluster
from envoy.extensions.common.matching.v3 import extension_matcher_pb2
from envoy.extensions.filters.http.dynamic_forward_proxy.v3 import (
    dynamic_forward_proxy_pb2 as dfp_filter,
)
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    header_mutation_pb2 as early,
)
from envoy.extensions.network.dns_resolver.cares.v3 import cares_dns_resolver_pb2 as cares
from envoy.type.matcher.v3 import http_inputs_pb2
from tests.unit.test_xds_shared import node, objects, same_as_reference

from meshpilot.api.identity import ObjectKey
from meshpilot.api.mesh_config import DnsResolver, MeshConfig
from meshpilot.mesh.model import MeshSnapshot
from meshpilot.xds import ProxyConfigBuilder
from meshpilot.xds.translate import access_log, build_resources, egress, wildcards
from meshpilot.xds.types import CLUSTER, EXTENSION_CONFIG, LISTENER, ROUTE, SCOPED_ROUTE

NET = "networking.istio.io"


def policy_sidecar(name: str, policy: dict[str, Any], selector: dict[str, str] | None = None
                   ) -> Any:
    spec: dict[str, Any] = {"outboundTrafficPolicy": policy}
    if selector:
        spec["workloadSelector"] = {"labels": selector}
    return (ObjectKey(NET, "Sidecar", "default", name),
            {"apiVersion": f"{NET}/v1", "kind": "Sidecar",
             "metadata": {"name": name, "namespace": "default"}, "spec": spec})


def with_mesh(snap: MeshSnapshot, **config: Any) -> MeshSnapshot:
    return dataclasses.replace(snap, mesh_config=MeshConfig(**config))


def versions_equal(a: Any, b: Any) -> bool:
    return {n: e.version for n, e in a.items()} == {n: e.version for n, e in b.items()}


def policy(resources: Any) -> extension_matcher_pb2.ExtensionWithMatcher:
    wrapped = extension_matcher_pb2.ExtensionWithMatcher()
    assert resources[EXTENSION_CONFIG][egress.POLICY_FILTER].typed_config.Unpack(wrapped)
    return wrapped


def _leaves(resources: Any) -> list[list[tuple[str, str]]]:
    """The skip matcher's predicates, each as its (header, RE2 expression) conditions
    (one, or those an ``and`` joins); any of them skips the filter."""
    (field,) = policy(resources).xds_matcher.matcher_list.matchers
    assert field.on_match.action.typed_config.type_url.endswith(".SkipFilter")
    predicate = field.predicate
    tops = (list(predicate.or_matcher.predicate) if predicate.HasField("or_matcher")
            else [predicate])
    out = []
    for top in tops:
        singles = ([p.single_predicate for p in top.and_matcher.predicate]
                   if top.HasField("and_matcher") else [top.single_predicate])
        conditions = []
        for single in singles:
            header = http_inputs_pb2.HttpRequestHeaderMatchInput()
            assert single.input.typed_config.Unpack(header)
            conditions.append((header.header_name, single.value_match.safe_regex.regex))
        out.append(conditions)
    return out


def expressions(resources: Any) -> dict[str, str]:
    """The skip matcher's RE2 expressions by the header each one reads (the first one
    that reads it: the authority's is the known hosts' expression)."""
    out: dict[str, str] = {}
    for conditions in _leaves(resources):
        for header, regex in conditions:
            out.setdefault(header, regex)
    return out


def decoded(resources: Any) -> set[str]:
    """The scope keys the skip matcher knows at exactly the ports their route config
    routes: every domain of the key's vhosts matches the authority expression, and the
    key at a port none of them names does not (RE2's syntax here is also Python's)."""
    expression = expressions(resources)[":authority"]
    known = set()
    for key, scope in resources[SCOPED_ROUTE].items():
        if key in egress.POLICY_SCOPES:
            continue
        config = resources[ROUTE][scope.route_configuration_name]
        domains = [d for v in config.virtual_hosts for d in v.domains
                   if d == key or d.startswith(f"{key}:")]
        if domains and all(re.fullmatch(expression, d) for d in domains) \
                and not re.fullmatch(expression, f"{key}:1"):
            known.add(key)
    return known


def test_the_key_encoding_is_lossless() -> None:
    keys = {"svc000", "svc000.default", "svc000.default.svc",
            "svc000.default.svc.cluster.local", "other.prod.svc.cluster.local",
            "other.prod", "api.example.com", "x.svc.cluster.local"}
    names, services = egress.encode_keys(keys)
    assert services == ["svc000.default"]  # the only base with all three of its keys
    assert set(names) | {k for b in services for k in
                         (b, f"{b}.svc", f"{b}.svc.cluster.local")} == keys
    assert len(names) + len(services) == len(keys) - 2


def lua_source(resources: Any) -> str:
    lua = lua_pb2.Lua()
    assert policy(resources).extension_config.typed_config.Unpack(lua)
    return lua.default_source_code.inline_string


def test_mesh_default_is_allow_any_and_mesh_config_sets_registry_only() -> None:
    snap = objects(2, {})
    assert egress.outbound_mode(snap, node(1)) == "ALLOW_ANY"
    assert f'"{egress.PASSTHROUGH_KEY}"' in lua_source(build_resources(snap, node(1)))
    closed = with_mesh(snap, outbound_mode="REGISTRY_ONLY")
    assert egress.outbound_mode(closed, node(1)) == "REGISTRY_ONLY"
    source = lua_source(build_resources(closed, node(1)))
    assert f'"{egress.BLACKHOLE_KEY}"' in source and egress.PASSTHROUGH_KEY not in source


def test_a_sidecar_policy_replaces_the_mesh_one_for_the_workloads_it_selects() -> None:
    snap = objects(2, {}, extra=[
        policy_sidecar("locked", {"mode": "REGISTRY_ONLY"}, selector={"app": "p1"}),
        policy_sidecar("no-mode", {}, selector={"app": "p2"}),
        policy_sidecar("open", {"mode": "ALLOW_ANY"}, selector={"app": "p3"})])
    closed = with_mesh(snap, outbound_mode="REGISTRY_ONLY")
    assert egress.outbound_mode(snap, node(1)) == "REGISTRY_ONLY"
    assert egress.outbound_mode(snap, node(2)) == "REGISTRY_ONLY"  # Istio's enum zero
    assert egress.outbound_mode(closed, node(3)) == "ALLOW_ANY"
    assert egress.outbound_mode(snap, node(4)) == "ALLOW_ANY"  # no Sidecar: the mesh's
    assert egress.outbound_policy(snap, node(2)) == ("REGISTRY_ONLY", "Sidecar default/no-mode")
    assert egress.outbound_policy(closed, node(4)) == ("REGISTRY_ONLY", "mesh config")
    assert egress.outbound_mode(closed, node(4)) == "REGISTRY_ONLY"
    # the shared per-class build agrees with the reference, one class per mode
    builder = ProxyConfigBuilder()
    for i in (1, 3, 4):
        same_as_reference(builder, closed, node(i))
    one, three = builder.config_for(closed, node(1)), builder.config_for(closed, node(3))
    assert one[EXTENSION_CONFIG] is not three[EXTENSION_CONFIG]
    # what does not depend on the mode is shared: the routes, scopes and clusters
    assert one[SCOPED_ROUTE] is three[SCOPED_ROUTE] or \
        versions_equal(one[SCOPED_ROUTE], three[SCOPED_ROUTE])


def test_the_policy_filter_knows_every_scope_key_and_nothing_else() -> None:
    res = build_resources(objects(2, {}), node(1))
    source = lua_source(res)
    keys = set(res[SCOPED_ROUTE]) - egress.POLICY_SCOPES
    assert set(expressions(res)) == {":authority"}  # no wildcard host: one header read
    assert {"svc000", "svc001.default", "svc001.default.svc.cluster.local"} <= keys
    assert decoded(res) == keys
    # the filter itself knows no key: only requests the matcher lets through reach it
    assert "svc000" not in source and egress.AUTHORITY_HEADER in source
    expression = expressions(res)[":authority"]
    for near_miss in ("svc0000", "xsvc000", "svc000.defaultx", "svc000.default.svc.cluster",
                      "", ":8080", "allow-any.outbound-traffic-policy.meshpilot"):
        assert not re.fullmatch(expression, near_miss), near_miss
    # a key that is not a DNS name never reaches the expression
    odd = egress.policy_filter(["good.example", "bad|.*", "(x)"], "ALLOW_ANY")
    regex = expressions({EXTENSION_CONFIG: {egress.POLICY_FILTER: odd}})[":authority"]
    assert regex == r"^(?:good\.example)(?::.*)?$"
    none = egress.policy_filter([], "ALLOW_ANY")
    regex = expressions({EXTENSION_CONFIG: {egress.POLICY_FILTER: none}})[":authority"]
    assert not any(re.search(regex, h) for h in ("", "a", "a:80"))


def test_the_listener_is_the_same_in_every_mode_and_names_both_filters() -> None:
    snap = objects(2, {})
    opened = build_resources(snap, node(1))
    closed = build_resources(with_mesh(snap, outbound_mode="REGISTRY_ONLY"), node(1))
    assert opened[LISTENER] == closed[LISTENER]
    assert set(opened[EXTENSION_CONFIG]) == {egress.POLICY_FILTER, egress.PASSTHROUGH_FILTER}
    assert {"PassthroughCluster", "BlackHoleCluster"} <= set(opened[CLUSTER])
    assert {"allow_any", "block_all"} <= set(opened[ROUTE])


def _resolvers(cache: Any) -> list[tuple[str, int]]:
    config = cares.CaresDnsResolverConfig()
    if not cache.HasField("typed_dns_resolver_config"):
        return []
    assert cache.typed_dns_resolver_config.typed_config.Unpack(config)
    assert config.dns_resolver_options.no_default_search_domain
    return [(r.socket_address.address, r.socket_address.port_value) for r in config.resolvers]


def _caches(res: Any) -> tuple[Any, Any]:
    """The DNS cache of the passthrough cluster and of the passthrough filter."""
    cluster_config, filter_config = dfp_cluster.ClusterConfig(), dfp_filter.FilterConfig()
    assert res[CLUSTER]["PassthroughCluster"].cluster_type.typed_config.Unpack(cluster_config)
    assert res[EXTENSION_CONFIG][egress.PASSTHROUGH_FILTER].typed_config.Unpack(filter_config)
    return cluster_config.dns_cache_config, filter_config.dns_cache_config


def test_dns_resolvers_go_to_the_passthrough_cache_of_filter_and_cluster() -> None:
    snap = with_mesh(objects(1, {}), dns_resolvers=(DnsResolver("127.0.0.1", 5353),))
    in_cluster, in_filter = _caches(build_resources(snap, node(1)))
    assert in_cluster == in_filter  # Envoy requires one cache config for both
    assert _resolvers(in_cluster) == [("127.0.0.1", 5353)]
    plain, _ = _caches(build_resources(objects(1, {}), node(1)))
    assert _resolvers(plain) == []  # none given: the host's resolv.conf


def test_a_weight_change_leaves_the_policy_alone_and_a_new_service_resends_it() -> None:
    builder = ProxyConfigBuilder()
    before = builder.config_for(objects(3, {}), node(1))
    after = builder.config_for(objects(3, {1: 40}), node(1))
    for t in (EXTENSION_CONFIG, SCOPED_ROUTE, CLUSTER, LISTENER):
        assert after[t] is before[t], t
    assert after[ROUTE] is not before[ROUTE]
    grown = builder.config_for(objects(4, {1: 40}), node(1))
    assert grown[EXTENSION_CONFIG] is not after[EXTENSION_CONFIG]
    passthrough = egress.PASSTHROUGH_FILTER
    assert grown[EXTENSION_CONFIG][passthrough] is after[EXTENSION_CONFIG][passthrough]
    assert "svc003.default" in decoded(build_resources(objects(4, {}), node(1)))


def test_a_client_cannot_name_the_passthrough_target_itself() -> None:
    """The header the policy filter keeps the original authority in is removed from every
    request by the early header mutation, before any filter or route reads it."""
    listener = build_resources(objects(1, {}), node(1))[LISTENER]["outbound_http_proxy"]
    manager = hcm.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    removed = []
    for extension in manager.early_header_mutation_extensions:
        mutation = early.HeaderMutation()
        assert extension.typed_config.Unpack(mutation)
        removed += [m.remove for m in mutation.mutations if m.remove]
    assert egress.AUTHORITY_HEADER in removed
    assert manager.http_filters[0].name == egress.POLICY_FILTER
    assert manager.http_filters[0].config_discovery.type_urls == [
        "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher"]


def https_entry() -> Any:
    """A ServiceEntry as istio.io's "Accessing External Services" writes one for HTTPS."""
    return (ObjectKey(NET, "ServiceEntry", "default", "ext"),
            {"apiVersion": f"{NET}/v1", "kind": "ServiceEntry",
             "metadata": {"name": "ext", "namespace": "default"},
             "spec": {"hosts": ["api.external.test"], "location": "MESH_EXTERNAL",
                      "resolution": "DNS",
                      "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}]}})


def _connect_routes(config: Any) -> list[tuple[str, str]]:
    return [(r.name, r.route.cluster) for v in config.virtual_hosts for r in v.routes
            if r.match.HasField("connect_matcher")
            and r.route.idle_timeout.seconds == 3600  # a connection's, not a stream's
            and [u.upgrade_type for u in r.route.upgrade_configs] == ["CONNECT"]
            and r.route.upgrade_configs[0].HasField("connect_config")]


def test_a_connect_tunnel_has_a_route_in_both_policy_scopes_and_to_an_https_entry() -> None:
    """``CONNECT`` (an ``HTTPS_PROXY`` client) is accepted by the outbound connection
    manager; Envoy takes it only on a route with a connect matcher, which ends the tunnel:
    the policy's two route configs have one each (Istio's PassthroughCluster and
    BlackHoleCluster for TLS), and a ServiceEntry's HTTPS port gets a vhost whose tunnel
    goes to its own cluster, reachable by the host's name as a routing scope."""
    snap = objects(1, {}, extra=[https_entry()])
    res = build_resources(snap, node(1))
    listener = res[LISTENER]["outbound_http_proxy"]
    manager = hcm.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    assert [u.upgrade_type for u in manager.upgrade_configs] == ["CONNECT"]
    assert _connect_routes(res[ROUTE]["allow_any"]) == [("allow_any", "PassthroughCluster")]
    assert _connect_routes(res[ROUTE]["block_all"]) == [("block_all", "BlackHoleCluster")]
    entry = res[ROUTE]["outbound|api.external.test"]
    assert _connect_routes(entry) == [("tunnel", "outbound|443||api.external.test")]
    assert list(entry.virtual_hosts[0].domains) == ["api.external.test:443"]
    assert "api.external.test" in res[SCOPED_ROUTE]
    assert "api.external.test" in decoded(res)
    # known only at the port it lists: at another (or bare, which a tunnel never is) the
    # policy filter runs, and the mode decides, as Istio's passthrough / blackhole does
    expression = expressions(res)[":authority"]
    assert re.fullmatch(expression, "api.external.test:443")
    for elsewhere in ("api.external.test:8443", "api.external.test", "api.external.test:4430"):
        assert not re.fullmatch(expression, elsewhere), elsewhere
    # the plain HTTP services keep their routes as they were: no tunnel there
    assert _connect_routes(res[ROUTE]["outbound|svc000.default.svc.cluster.local"]) == []
    same_as_reference(ProxyConfigBuilder(), snap, node(1))


def test_with_a_wildcard_host_known_the_matcher_also_reads_the_scope_key() -> None:
    """Istio's "Egress using Wildcard Hosts": a name a pattern covers has the pattern as
    its scope key (not its authority), so the matcher skips the filter for it by that
    key; a host nothing covers still reaches the filter."""
    wild = (ObjectKey(NET, "ServiceEntry", "default", "wild"),
            {"apiVersion": f"{NET}/v1", "kind": "ServiceEntry",
             "metadata": {"name": "wild", "namespace": "default"},
             "spec": {"hosts": ["*.wild.test"], "location": "MESH_EXTERNAL",
                      "resolution": "STATIC", "endpoints": [{"address": "127.0.0.9"}],
                      "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}})
    res = build_resources(objects(1, {}, extra=[wild]), node(1))
    by_header = expressions(res)
    scope = by_header[wildcards.SCOPE_HEADER]
    assert re.fullmatch(scope, "*.wild.test")
    assert not re.fullmatch(scope, "api.wild.test") and not re.fullmatch(scope, "svc000")
    assert "*.wild.test" in decoded(res)
    assert not re.fullmatch(by_header[":authority"], "api.wild.test:80")
    # a covered name is known only at the ports the pattern's route config routes (80,
    # its only port, so the bare name too); elsewhere the policy decides, as in Istio
    (covered,) = [dict(c) for c in _leaves(res) if len(c) == 2]
    assert covered[wildcards.SCOPE_HEADER] == scope
    port = covered[":authority"]
    assert re.fullmatch(port, "api.wild.test:80") and re.fullmatch(port, "api.wild.test")
    assert not re.fullmatch(port, "api.wild.test:8443")


def _log_formats(listener: Any) -> list[str]:
    manager = hcm.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    out = []
    for log in manager.access_log:
        config = file_pb2.FileAccessLog()
        if log.typed_config.Unpack(config):
            out.append(config.log_format.text_format_source.inline_string)
    return out


def test_the_outbound_access_log_shows_the_host_the_app_asked_for() -> None:
    """A blackholed request's authority is the policy scope's own by the time it is
    logged; the outbound proxy's line reads the authority the policy kept instead (Istio's
    line shows the host the app called). Other listeners keep Istio's format as it is."""
    res = build_resources(objects(1, {}), node(1, access_log="/run/p1.access.log"))
    (outbound,) = _log_formats(res[LISTENER]["outbound_http_proxy"])
    assert '"%REQ(X-MESHPILOT-AUTHORITY?:AUTHORITY)%"' in outbound
    assert outbound == access_log.ISTIO_TEXT_FORMAT.replace(
        "%REQ(:AUTHORITY)%", "%REQ(X-MESHPILOT-AUTHORITY?:AUTHORITY)%")
    (inbound,) = _log_formats(res[LISTENER]["inbound_9080"])
    assert inbound == access_log.ISTIO_TEXT_FORMAT


def _entry(name: str, host: str) -> Any:
    return (ObjectKey(NET, "ServiceEntry", "default", name),
            {"apiVersion": f"{NET}/v1", "kind": "ServiceEntry",
             "metadata": {"name": name, "namespace": "default"},
             "spec": {"hosts": [host], "location": "MESH_EXTERNAL", "resolution": "DNS",
                      "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]}})


def _tls_routes(matches: list[dict[str, Any]]) -> Any:
    return (ObjectKey(NET, "VirtualService", "default", "api"),
            {"apiVersion": f"{NET}/v1", "kind": "VirtualService",
             "metadata": {"name": "api", "namespace": "default"},
             "spec": {"hosts": ["api.external.test"], "tls": [
                 {"match": [m], "route": [
                     {"destination": {"host": "api.external.test"}, "weight": 80},
                     {"destination": {"host": "backup.external.test"}, "weight": 20}]}
                 for m in matches]}})


def _tunnel_action(res: Any) -> Any:
    (vhost,) = res[ROUTE]["outbound|api.external.test"].virtual_hosts
    (route,) = vhost.routes
    assert route.match.HasField("connect_matcher")
    return route.route


def test_a_tls_route_whose_sni_hosts_cover_the_tunnels_host_takes_the_tunnel() -> None:
    """Istio's ``tls`` routes match the ClientHello's SNI, which an HTTPS client takes from
    the host it connects to: the tunnel's host. The first match that applies here and
    covers the host splits the tunnel by weight; one that does not apply (another
    workload's sourceLabels, a subnet) leaves it to the entry itself."""
    entries = [_entry("api", "api.external.test"), _entry("backup", "backup.external.test")]
    split = objects(1, {}, extra=[*entries, _tls_routes([
        {"sniHosts": ["api.external.test"], "sourceLabels": {"app": "someone-else"}},
        {"sniHosts": ["*.external.test"], "port": 443}])])
    res = build_resources(split, node(1))
    action = _tunnel_action(res)
    assert [(c.name, c.weight.value) for c in action.weighted_clusters.clusters] == [
        ("outbound|443||api.external.test", 80), ("outbound|443||backup.external.test", 20)]
    assert action.upgrade_configs[0].HasField("connect_config")
    same_as_reference(ProxyConfigBuilder(), split, node(1))
    for match in ({"sniHosts": ["other.external.test"]},
                  {"sniHosts": ["api.external.test"], "destinationSubnets": ["10.0.0.0/8"]},
                  {"sniHosts": ["api.external.test"], "port": 8443}):
        alone = build_resources(objects(1, {}, extra=[*entries, _tls_routes([match])]),
                                node(1))
        assert _tunnel_action(alone).cluster == "outbound|443||api.external.test", match


def test_a_port_an_entry_gains_is_known_to_the_shared_build_too() -> None:
    """The class's ECDS resource follows the ports of its keys, not only the keys: when
    the HTTPS entry also lists 8443, the same host at 8443 is known (its tunnel goes to
    the entry's cluster), and the shared per-class build agrees with the reference one
    on both snapshots, the same builder carried from the first to the second."""
    builder = ProxyConfigBuilder()
    one = objects(1, {}, extra=[https_entry()])
    same_as_reference(builder, one, node(1))
    key, entry = https_entry()
    spec = {**entry["spec"], "ports": [*entry["spec"]["ports"],
                                       {"number": 8443, "name": "tls", "protocol": "TLS"}]}
    two = objects(1, {}, extra=[(key, {**entry, "spec": spec})])
    same_as_reference(builder, two, node(1))
    before = expressions(build_resources(one, node(1)))[":authority"]
    after = expressions(build_resources(two, node(1)))[":authority"]
    assert not re.fullmatch(before, "api.external.test:8443")
    assert re.fullmatch(after, "api.external.test:8443")
