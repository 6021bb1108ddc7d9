"""What the proxies need so their stats can be read as Istio's standard metrics.

Envoy's stats know the upstream cluster (``outbound|8080|v2|myapp...``: the destination,
seen by the client) but not who called a server. So (the source id, the counted sources
and the counters' names are defined in :mod:`meshpilot.mesh.sources`):

- every outbound request sets the caller's source id header, overwriting any value the
  app sent: sidecars and the mesh proxy set it in their outbound connection manager (an
  early header mutation, so the per-service route configurations stay the same for every
  proxy and are built once), gateways in their route configurations;
- every inbound HTTP route configuration (``inbound|<port>||``, over RDS, the same for
  every pod with that port) has one route per counted source, all alike but for their
  names, picked by a lookup table (:func:`count_sources`): the route's name *is* the
  counted source. The table is keyed by :data:`INBOUND_KEY_HEADER`, which the inbound
  listener writes before routing from the peer certificate and the claimed source id
  (:func:`inbound_key_mutation`), so a claim is believed over mTLS only from the
  identity it names, and only known sources have a name: whatever a plaintext client
  writes, the number of names stays the number of known sources (twice, plus two);
- every inbound HTTP listener counts each request it answers with Envoy's stats access
  logger (:func:`inbound_access_log`), tagged with that route name and the response
  code. An access logger sees every request, including those the sidecar refuses before
  the router (an AuthorizationPolicy's 403, a RequestAuthentication's 401, the fail-closed
  deny-all), whose route Envoy has already picked by then.

Why not Envoy's virtual clusters, which counted per source before: the router charges
them, so a request answered by an earlier filter was never counted (Istio's stats filter
counts it); and they are matched one by one, so a request from the last of 2,000 known
sources cost the inbound sidecar 2.1 million instructions against 180 thousand with the
table (``benchmarks/source_matching.py``). A denial made *at* the router (an RBAC shadow
rule and a route answering 403) was rejected: a route config that is missing or late would
then let a denied request through, where the RBAC filter in the listener never does.

Outbound and inbound clusters also track request/response sizes (``istio_request_bytes``,
``istio_response_bytes``).
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.core.v3 import extension_pb2 as core_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    header_mutation_pb2 as early_hm,
)
from envoy.type.matcher.v3 import http_inputs_pb2
from google.protobuf import json_format, struct_pb2
from xds.core.v3 import extension_pb2 as xds_extension_pb2
from xds.type.matcher.v3 import matcher_pb2
from xds.type.v3 import typed_struct_pb2

from meshpilot.mesh.model import ProxyNode
from meshpilot.mesh.sources import (
    CODE_TAG,
    DURATION_STAT,
    REQUESTS_STAT,
    SOURCE_HEADER,
    SOURCE_TAG,
    UNKNOWN,
    UNKNOWN_SOURCE,
    counted_name,
    inbound_stat_prefix,
    node_source_id,
    source_identity,
    spiffe_id,
)
from meshpilot.xds.translate import pb
from meshpilot.xds.translate.names import TYPE_ROUTE

EARLY_MUTATION = "envoy.http.early_header_mutation.header_mutation"
STATS_LOGGER = "envoy.access_loggers.stats"
STATS_LOGGER_CONFIG = "type.googleapis.com/envoy.extensions.access_loggers.stats.v3.Config"

INBOUND_KEY_HEADER = "x-meshpilot-inbound-key"
"""Request header the inbound sidecar writes before routing, ``<peer URI SAN>;<source
id>;`` (the SAN is empty in plaintext, so a plaintext key starts with ``;`` and can never
equal an mTLS one), for its routes to look up; any value a client sent is replaced, and
the router removes it before the app."""
INBOUND_KEY_FORMAT = f"%DOWNSTREAM_PEER_URI_SAN%;%REQ({SOURCE_HEADER})%;"
PLAINTEXT_KEY_PREFIX = ";"

MAX_COUNTERS = 100_000
MAX_HISTOGRAMS = 20_000
"""Caps on one inbound port's counters and histograms, beyond the bound the names already
give (one histogram per counted source, one counter per counted source and response code):
a safety net should that bound ever break, not a limit a mesh is expected to reach."""


def source_mutation(node: ProxyNode) -> core_pb2.TypedExtensionConfig:
    """The connection manager's early header mutation setting ``node``'s source header."""
    config = early_hm.HeaderMutation(
        mutations=[mutation_rules_pb2.HeaderMutation(append=_overwrite(SOURCE_HEADER,
                                                                       node_source_id(node)))]
    )
    return core_pb2.TypedExtensionConfig(name=EARLY_MUTATION, typed_config=pb.pack(config))


def _overwrite(key: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def inbound_key_mutation() -> core_pb2.TypedExtensionConfig:
    """The inbound connection manager's early header mutation writing
    :data:`INBOUND_KEY_HEADER` (the same on the mTLS and the plaintext chain)."""
    config = early_hm.HeaderMutation(mutations=[
        mutation_rules_pb2.HeaderMutation(append=_overwrite(INBOUND_KEY_HEADER,
                                                            INBOUND_KEY_FORMAT))])
    return core_pb2.TypedExtensionConfig(name=EARLY_MUTATION, typed_config=pb.pack(config))


def inbound_key(principal: str, source: str) -> str:
    """What :data:`INBOUND_KEY_FORMAT` gives for a caller proved to be ``principal``
    (empty in plaintext) claiming ``source``."""
    return f"{principal};{source};"


def counted_keys(sources: Iterable[str], trust_domain: str) -> dict[str, str]:
    """Inbound key → counted source, per known source id: its claim proved by its own
    certificate, and its claim in plaintext. Other keys are :data:`UNKNOWN_SOURCE`."""
    out: dict[str, str] = {}
    for source in sources:
        namespace, account = source_identity(source)
        if account != UNKNOWN:
            out[inbound_key(spiffe_id(trust_domain, namespace, account), source)] = (
                counted_name(source, True))
        out[inbound_key("", source)] = counted_name(source, False)
    return out


def _route_action(template: rc.Route, name: str) -> matcher_pb2.Matcher.OnMatch:
    route = rc.Route()
    route.CopyFrom(template)
    route.name = name
    return matcher_pb2.Matcher.OnMatch(action=xds_extension_pb2.TypedExtensionConfig(
        name=name, typed_config=pb.pack(route)))


def _key_input() -> xds_extension_pb2.TypedExtensionConfig:
    return xds_extension_pb2.TypedExtensionConfig(
        name=INBOUND_KEY_HEADER, typed_config=pb.pack(
            http_inputs_pb2.HttpRequestHeaderMatchInput(header_name=INBOUND_KEY_HEADER)))


def counting_matcher(template: rc.Route, sources: Iterable[str], trust_domain: str
                     ) -> matcher_pb2.Matcher:
    """The virtual host's route table: a copy of ``template`` per counted source, named
    after it, found by one hash lookup of the inbound key (the cost does not grow with
    the number of sources); a key not in the table is an unknown source, in plaintext when
    the key has no certificate part."""
    table = matcher_pb2.Matcher.MatcherTree.MatchMap()
    for key, name in sorted(counted_keys(sources, trust_domain).items()):
        table.map[key].CopyFrom(_route_action(template, name))
    unknown = matcher_pb2.Matcher(
        matcher_tree=matcher_pb2.Matcher.MatcherTree(
            input=_key_input(),
            prefix_match_map=matcher_pb2.Matcher.MatcherTree.MatchMap(map={
                PLAINTEXT_KEY_PREFIX: _route_action(template,
                                                    counted_name(UNKNOWN_SOURCE, False))})),
        on_no_match=_route_action(template, counted_name(UNKNOWN_SOURCE, True)))
    return matcher_pb2.Matcher(
        matcher_tree=matcher_pb2.Matcher.MatcherTree(input=_key_input(), exact_match_map=table),
        on_no_match=matcher_pb2.Matcher.OnMatch(matcher=unknown))


def count_sources(config: route_pb2.RouteConfiguration, sources: Iterable[str],
                  trust_domain: str) -> None:
    """An inbound route config's virtual hosts route with :func:`counting_matcher`, their
    one route as the template (in place); the router drops the inbound key."""
    known = tuple(sources)
    for vhost in config.virtual_hosts:
        (template,) = vhost.routes
        vhost.matcher.CopyFrom(counting_matcher(template, known, trust_domain))
        del vhost.routes[:]
    config.request_headers_to_remove.append(INBOUND_KEY_HEADER)


def inbound_access_log(container_port: int) -> accesslog_pb2.AccessLog:
    """The stats access logger of an inbound HTTP listener: per request, one count under
    its counted source (the route's name) and response code, and its duration (first
    byte in to last byte out, as Istio measures) under its counted source.

    The config travels as a TypedStruct: the Python protos lag Envoy's, which wants
    ``stats_scope`` where they still have a deprecated ``stat_prefix``. The scope is not
    shared between the instances of a listener (``sharing_name``): Envoy 1.40 crashes on
    it when it validates a config. A replaced listener's counters live on while it drains
    (stats of one name are one stat), and a counter that restarts from zero after that is
    a reset, which telemetry tells and adds up (``meshpilot.telemetry.store``).
    """
    prefix = inbound_stat_prefix(container_port)
    config = {
        "stats_scope": {"prefix": prefix, "max_counters": MAX_COUNTERS,
                        "max_histograms": MAX_HISTOGRAMS},
        "counters": [{"stat": {"name": REQUESTS_STAT, "tags": [
            {"name": CODE_TAG, "value_format": "%RESPONSE_CODE%"},
            {"name": SOURCE_TAG, "value_format": "%ROUTE_NAME%"}]}, "value_fixed": 1}],
        "histograms": [{"stat": {"name": DURATION_STAT, "tags": [
            {"name": SOURCE_TAG, "value_format": "%ROUTE_NAME%"}]},
            "unit": "Milliseconds", "value_format": "%DURATION%"}],
    }
    typed = typed_struct_pb2.TypedStruct(
        type_url=STATS_LOGGER_CONFIG, value=json_format.ParseDict(config, struct_pb2.Struct()))
    return accesslog_pb2.AccessLog(name=STATS_LOGGER, typed_config=pb.pack(typed))


def mark_gateway_routes(out: dict, node: ProxyNode) -> None:
    """A gateway's route configs set its source header (in place). Sidecars set theirs
    in their outbound listener: see :func:`source_mutation`."""
    header = _overwrite(SOURCE_HEADER, node_source_id(node))
    for config in out[TYPE_ROUTE].values():
        config.request_headers_to_add.append(header)
