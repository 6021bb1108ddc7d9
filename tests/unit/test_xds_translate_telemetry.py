"""The inbound side's request counting, as translated: the lookup tables of counted
sources in the shared route config, and the stats access logger in the listener.

Envoy's part (the lookup, the logging) is played here by :func:`counted_as`, which follows
the documented semantics of the matcher;
tests/integration/test_inbound_telemetry_envoy.py checks it on a real Envoy.
"""

from __future__ import annotations

import re
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.type.matcher.v3 import http_inputs_pb2
from google.protobuf import json_format
from tests.builders import sidecar_node
from xds.type.matcher.v3 import matcher_pb2
from xds.type.v3 import typed_struct_pb2

from meshpilot.mesh.model import InboundPort
from meshpilot.mesh.sources import SOURCE_HEADER, UNKNOWN_SOURCE, counted_name
from meshpilot.security.policy import WorkloadAuthorization
from meshpilot.xds.translate import inbound_route, listeners, telemetry, tls
from meshpilot.xds.translate.workload_security import InboundSecurity

TD = "cluster.local"
SLEEP = "sleep|foo|sleep|v1|sleep"
SLEEP_V2 = "sleep-v2|foo|sleep|v2|sleep"
MESH_PROXY = "mesh-proxy|default|mesh-client|unknown|default"
NO_ACCOUNT = "legacy|foo|legacy|unknown|unknown"
SOURCES = (MESH_PROXY, SLEEP, SLEEP_V2, NO_ACCOUNT)
SLEEP_ID = "spiffe://cluster.local/ns/foo/sa/sleep"
MESH_PROXY_ID = "spiffe://cluster.local/ns/default/sa/default"


def counted_as(config: Any, *, peer: str, claim: str | None) -> str:
    """The route (counted source) Envoy picks for a request whose peer certificate names
    ``peer`` (empty: plaintext, where the listener removes the principal header) and that
    claims ``claim`` (None: no source header)."""
    headers = {tls.PEER_PRINCIPAL_HEADER: peer} if peer else {}
    if claim is not None:
        headers[SOURCE_HEADER] = claim
    (vhost,) = config.virtual_hosts
    return _lookup(vhost.matcher, headers)


def _header(config: Any) -> str:
    header = http_inputs_pb2.HttpRequestHeaderMatchInput()
    assert config.typed_config.Unpack(header)
    return header.header_name


def _lookup(matcher: matcher_pb2.Matcher, headers: dict[str, str]) -> str:
    chosen: matcher_pb2.Matcher.OnMatch | None = None
    if matcher.HasField("matcher_tree"):
        tree = matcher.matcher_tree
        value = headers.get(_header(tree.input))
        assert tree.HasField("exact_match_map")
        chosen = tree.exact_match_map.map.get(value) if value is not None else None
    else:
        for field in matcher.matcher_list.matchers:
            single = field.predicate.single_predicate
            value = headers.get(_header(single.input))
            regex = single.value_match.safe_regex.regex
            if value is not None and re.fullmatch(regex, value):
                chosen = field.on_match
                break
    if chosen is None:
        chosen = matcher.on_no_match
    if chosen.HasField("matcher"):
        return _lookup(chosen.matcher, headers)
    route = rc.Route()
    assert chosen.action.typed_config.Unpack(route)
    assert route.name == chosen.action.name
    return route.name


def _config() -> Any:
    return inbound_route(8080, SOURCES, TD)


def test_a_claim_counts_as_proved_only_with_the_certificate_of_its_own_identity() -> None:
    config = _config()
    assert counted_as(config, peer=SLEEP_ID, claim=SLEEP) == counted_name(SLEEP, True)
    assert counted_as(config, peer=SLEEP_ID, claim=SLEEP_V2) == counted_name(SLEEP_V2, True)
    assert counted_as(config, peer=MESH_PROXY_ID, claim=MESH_PROXY) == \
        counted_name(MESH_PROXY, True)
    # another identity's claim over mTLS: not believed, but still mutual TLS
    unknown_mtls = counted_name(UNKNOWN_SOURCE, True)
    assert counted_as(config, peer=MESH_PROXY_ID, claim=SLEEP) == unknown_mtls
    assert counted_as(config, peer=SLEEP_ID, claim=None) == unknown_mtls
    assert counted_as(config, peer=SLEEP_ID, claim=NO_ACCOUNT) == unknown_mtls
    # an identity the mesh does not know (yet): mutual TLS all the same
    assert counted_as(config, peer="spiffe://cluster.local/ns/new/sa/new", claim=SLEEP) == \
        unknown_mtls


def test_a_plaintext_claim_counts_as_plaintext_whatever_it_says() -> None:
    config = _config()
    assert counted_as(config, peer="", claim=SLEEP) == counted_name(SLEEP, False)
    assert counted_as(config, peer="", claim=NO_ACCOUNT) == counted_name(NO_ACCOUNT, False)
    unknown = counted_name(UNKNOWN_SOURCE, False)
    for forged in (f"{SLEEP_ID};{SLEEP}", f"{SLEEP}|mtls", "nobody|x|y|z|w", "", None):
        assert counted_as(config, peer="", claim=forged) == unknown, forged


def test_the_route_names_are_the_counted_sources_and_nothing_else() -> None:
    """Whatever callers send, a request is counted under one of these names: twice the
    known sources (less those with no service account to prove), plus the two unknowns."""
    config = _config()
    (vhost,) = config.virtual_hosts
    names = _route_names(vhost.matcher)
    assert names == {counted_name(SLEEP, True), counted_name(SLEEP, False),
                     counted_name(SLEEP_V2, True), counted_name(SLEEP_V2, False),
                     counted_name(MESH_PROXY, True), counted_name(MESH_PROXY, False),
                     counted_name(NO_ACCOUNT, False),
                     counted_name(UNKNOWN_SOURCE, True), counted_name(UNKNOWN_SOURCE, False)}


def test_with_no_known_source_everything_is_unknown() -> None:
    config = inbound_route(8080, (), TD)
    assert counted_as(config, peer=SLEEP_ID, claim=SLEEP) == counted_name(UNKNOWN_SOURCE, True)
    assert counted_as(config, peer="", claim=SLEEP) == counted_name(UNKNOWN_SOURCE, False)


def _route_names(matcher: matcher_pb2.Matcher) -> set[str]:
    if matcher.HasField("matcher_tree"):
        branches = list(matcher.matcher_tree.exact_match_map.map.values())
    else:
        branches = [m.on_match for m in matcher.matcher_list.matchers]
    out = set()
    for on_match in [*branches, matcher.on_no_match]:
        if on_match.HasField("matcher"):
            out |= _route_names(on_match.matcher)
        else:
            route = rc.Route()
            assert on_match.action.typed_config.Unpack(route)
            out.add(route.name)
            # every route is the one inbound route, but for its name
            assert route.route.cluster == "inbound|8080||"
            assert route.route.timeout.ToSeconds() == 0
            assert route.match.prefix == "/"
    return out


def test_the_same_sources_give_the_same_bytes() -> None:
    one = inbound_route(8080, SOURCES, TD).SerializeToString(deterministic=True)
    two = inbound_route(8080, tuple(reversed(SOURCES)), TD).SerializeToString(deterministic=True)
    assert one == two


def _inbound_listener(mode: str) -> listener_pb2.Listener:
    node = sidecar_node("httpbin-0", "127.10.0.5", labels={"app": "httpbin"},
                        inbound=(InboundPort(8080, 40000, "http"),))
    security = InboundSecurity(TD, ((8080, mode),), WorkloadAuthorization())
    return listeners.inbound(node, node.inbound[0], security)


def _managers(listener: listener_pb2.Listener) -> list[hcm.HttpConnectionManager]:
    out = []
    for chain in listener.filter_chains:
        manager = hcm.HttpConnectionManager()
        assert chain.filters[-1].typed_config.Unpack(manager)
        out.append(manager)
    return out


def test_every_inbound_chain_logs_every_request() -> None:
    managers = _managers(_inbound_listener("PERMISSIVE"))
    assert len(managers) == 2  # mTLS and plaintext
    for manager in managers:
        (log,) = manager.access_log
        assert log.name == "envoy.access_loggers.stats"
        assert not log.HasField("filter")  # every request, the refused ones included
        assert log == telemetry.inbound_access_log(8080)


def test_the_stats_logger_counts_by_code_flags_and_counted_source_with_histograms() -> None:
    """Every request stat carries the response code and Envoy's response flags, as
    every series on Istio's "Standard Metrics" page does; the histograms are the
    duration and both body sizes."""
    log = telemetry.inbound_access_log(8080)
    typed = typed_struct_pb2.TypedStruct()
    assert log.typed_config.Unpack(typed)
    assert typed.type_url == \
        "type.googleapis.com/envoy.extensions.access_loggers.stats.v3.Config"
    config = json_format.MessageToDict(typed.value)
    assert config["stats_scope"]["prefix"] == "meshpilot.inbound_8080"
    assert config["stats_scope"]["max_counters"] > 0
    assert config["stats_scope"]["max_histograms"] > 0
    tags = [{"name": "response_code", "value_format": "%RESPONSE_CODE%"},
            {"name": "response_flags", "value_format": "%RESPONSE_FLAGS%"},
            {"name": "source", "value_format": "%ROUTE_NAME%"}]
    (counter,) = config["counters"]
    assert counter["stat"] == {"name": "requests", "tags": tags}
    assert counter["value_fixed"] == 1
    assert [(h["stat"], h["unit"], h["value_format"]) for h in config["histograms"]] == [
        ({"name": "request_duration", "tags": tags}, "Milliseconds", "%DURATION%"),
        ({"name": "request_bytes", "tags": tags}, "Bytes", "%BYTES_RECEIVED%"),
        ({"name": "response_bytes", "tags": tags}, "Bytes", "%BYTES_SENT%")]


def test_outbound_listeners_count_by_upstream_cluster_and_inbound_ones_do_not() -> None:
    """The source side counts in the outbound connection manager, tagged with the
    upstream cluster and the gRPC status; an inbound listener keeps its own logger only."""
    node = sidecar_node("c", "127.10.0.3", workload="c", labels={},
                        inbound=(InboundPort(8080, 40000, "http"),))
    outbound = telemetry.with_outbound_counting(listeners.outbound(node))
    (manager,) = _managers(outbound)
    (log,) = [a for a in manager.access_log if a.name == "envoy.access_loggers.stats"]
    assert log == telemetry.outbound_access_log()
    typed = typed_struct_pb2.TypedStruct()
    assert log.typed_config.Unpack(typed)
    config = json_format.MessageToDict(typed.value)
    assert config["stats_scope"]["prefix"] == "meshpilot.outbound"
    assert [t["name"] for t in config["counters"][0]["stat"]["tags"]] == [
        "response_code", "response_flags", "grpc_status", "cluster"]
    assert config["counters"][0]["stat"]["tags"][-1]["value_format"] == \
        "%UPSTREAM_CLUSTER_RAW%"
    inbound = _inbound_listener("PERMISSIVE")
    before = inbound.SerializeToString()
    assert telemetry.with_outbound_counting(inbound).SerializeToString() == before
    # a gateway's servers count as the source too (Istio's gateways report so)
    gateway = telemetry.with_outbound_counting(listeners.gateway(node, 80, 8080))
    (gateway_manager,) = _managers(gateway)
    assert telemetry.outbound_access_log() in gateway_manager.access_log
