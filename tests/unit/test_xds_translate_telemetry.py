"""The inbound side's request counting, as translated: the lookup table of counted sources
in the shared route config, and the key and the stats access logger in the listener.

Envoy's part (writing the key, the lookup, the logging) is played here by
:func:`counted_as`, which follows the documented semantics of the header formatter and of
the matcher; tests/integration/test_inbound_telemetry_envoy.py checks it on a real Envoy.
"""

from __future__ import annotations

from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    header_mutation_pb2 as early_hm,
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
MESH_PROXY = "mesh-proxy|default|mesh-client|unknown|default"
NO_ACCOUNT = "legacy|foo|legacy|unknown|unknown"
SOURCES = (MESH_PROXY, SLEEP, NO_ACCOUNT)
SLEEP_ID = "spiffe://cluster.local/ns/foo/sa/sleep"


def counted_as(config: Any, *, peer: str, claim: str) -> str:
    """The route (counted source) Envoy picks for a request whose peer certificate names
    ``peer`` (empty: plaintext) and that claims ``claim`` in the source header."""
    key = telemetry.INBOUND_KEY_FORMAT.replace("%DOWNSTREAM_PEER_URI_SAN%", peer).replace(
        f"%REQ({SOURCE_HEADER})%", claim)
    (vhost,) = config.virtual_hosts
    return _lookup(vhost.matcher, key)


def _lookup(matcher: matcher_pb2.Matcher, key: str) -> str:
    tree = matcher.matcher_tree
    header = http_inputs_pb2.HttpRequestHeaderMatchInput()
    assert tree.input.typed_config.Unpack(header)
    assert header.header_name == telemetry.INBOUND_KEY_HEADER
    found: matcher_pb2.Matcher.OnMatch | None = None
    if tree.HasField("exact_match_map"):
        found = tree.exact_match_map.map.get(key)
    else:  # the longest prefix wins
        prefixes = [p for p in tree.prefix_match_map.map if key.startswith(p)]
        found = tree.prefix_match_map.map[max(prefixes, key=len)] if prefixes else None
    chosen = found if found is not None else matcher.on_no_match
    if chosen.HasField("matcher"):
        return _lookup(chosen.matcher, key)
    route = rc.Route()
    assert chosen.action.typed_config.Unpack(route)
    assert route.name == chosen.action.name
    return route.name


def _config() -> Any:
    return inbound_route(8080, SOURCES, TD)


def test_a_claim_counts_as_proved_only_with_the_certificate_of_its_own_identity() -> None:
    config = _config()
    assert counted_as(config, peer=SLEEP_ID, claim=SLEEP) == counted_name(SLEEP, True)
    mesh_proxy = "spiffe://cluster.local/ns/default/sa/default"
    assert counted_as(config, peer=mesh_proxy, claim=MESH_PROXY) == \
        counted_name(MESH_PROXY, True)
    # another identity's claim over mTLS: not believed, but still mutual TLS
    assert counted_as(config, peer=mesh_proxy, claim=SLEEP) == counted_name(UNKNOWN_SOURCE, True)
    assert counted_as(config, peer=SLEEP_ID, claim="") == counted_name(UNKNOWN_SOURCE, True)


def test_a_plaintext_claim_counts_as_plaintext_whatever_it_says() -> None:
    config = _config()
    assert counted_as(config, peer="", claim=SLEEP) == counted_name(SLEEP, False)
    assert counted_as(config, peer="", claim=NO_ACCOUNT) == counted_name(NO_ACCOUNT, False)
    for forged in (f"{SLEEP_ID};{SLEEP}", f"{SLEEP};", "nobody|x|y|z|w", "", ";"):
        got = counted_as(config, peer="", claim=forged)
        assert not got.endswith("|mtls"), (forged, got)
    assert counted_as(config, peer="", claim="nobody|x|y|z|w") == \
        counted_name(UNKNOWN_SOURCE, False)


def test_the_route_names_are_the_counted_sources_and_nothing_else() -> None:
    """Whatever callers send, a request is counted under one of these names: twice the
    known sources (less those with no service account to prove), plus the two unknowns."""
    config = _config()
    (vhost,) = config.virtual_hosts
    names = _route_names(vhost.matcher)
    assert names == {counted_name(SLEEP, True), counted_name(SLEEP, False),
                     counted_name(MESH_PROXY, True), counted_name(MESH_PROXY, False),
                     counted_name(NO_ACCOUNT, False),
                     counted_name(UNKNOWN_SOURCE, True), counted_name(UNKNOWN_SOURCE, False)}


def _route_names(matcher: matcher_pb2.Matcher) -> set[str]:
    tree = matcher.matcher_tree
    maps = tree.exact_match_map if tree.HasField("exact_match_map") else tree.prefix_match_map
    out = set()
    for on_match in [*maps.map.values(), matcher.on_no_match]:
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


def test_the_router_drops_the_key_before_the_app() -> None:
    assert list(_config().request_headers_to_remove) == [telemetry.INBOUND_KEY_HEADER]


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


def test_every_inbound_chain_writes_the_key_and_logs_every_request() -> None:
    managers = _managers(_inbound_listener("PERMISSIVE"))
    assert len(managers) == 2  # mTLS and plaintext
    for manager in managers:
        principal, key = manager.early_header_mutation_extensions
        assert principal == tls.peer_principal_mutation(True) or \
            principal == tls.peer_principal_mutation(False)
        mutation = early_hm.HeaderMutation()
        assert key.typed_config.Unpack(mutation)
        (written,) = mutation.mutations
        assert (written.append.header.key, written.append.header.value) == (
            telemetry.INBOUND_KEY_HEADER,
            f"%DOWNSTREAM_PEER_URI_SAN%;%REQ({SOURCE_HEADER})%;")
        (log,) = manager.access_log
        assert log.name == "envoy.access_loggers.stats"
        assert not log.HasField("filter")  # every request, the refused ones included


def test_the_stats_logger_counts_by_code_and_counted_source_with_durations() -> None:
    log = telemetry.inbound_access_log(8080)
    typed = typed_struct_pb2.TypedStruct()
    assert log.typed_config.Unpack(typed)
    assert typed.type_url == \
        "type.googleapis.com/envoy.extensions.access_loggers.stats.v3.Config"
    config = json_format.MessageToDict(typed.value)
    assert config["stats_scope"]["prefix"] == "meshpilot.inbound_8080"
    assert config["stats_scope"]["max_counters"] > 0
    assert config["stats_scope"]["max_histograms"] > 0
    (counter,) = config["counters"]
    assert counter["stat"] == {"name": "requests", "tags": [
        {"name": "response_code", "value_format": "%RESPONSE_CODE%"},
        {"name": "source", "value_format": "%ROUTE_NAME%"}]}
    assert counter["value_fixed"] == 1
    (durations,) = config["histograms"]
    assert durations["stat"] == {"name": "request_duration", "tags": [
        {"name": "source", "value_format": "%ROUTE_NAME%"}]}
    assert (durations["unit"], durations["value_format"]) == ("Milliseconds", "%DURATION%")
