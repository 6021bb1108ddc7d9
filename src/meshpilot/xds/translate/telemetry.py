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
  names, picked by lookup tables (:func:`counting_matcher`): the route's name *is* the
  counted source. They are looked up by the peer principal header, which the inbound
  listener writes from the peer certificate on its mTLS chain and removes on its
  plaintext one, then by the claimed source id: a claim is believed over mTLS only from
  the identity it names, and only known sources have a name, so whatever a plaintext
  client writes, the number of names stays the number of known sources (twice, plus two);
- every inbound HTTP listener counts each request it answers with Envoy's stats access
  logger (:func:`inbound_access_log`), tagged with that route name and the response
  code. An access logger sees every request, including those the sidecar refuses before
  the router (an AuthorizationPolicy's 403, a RequestAuthentication's 401, the fail-closed
  deny-all), whose route Envoy has already picked by then.

Why not Envoy's virtual clusters, which counted per source before: the router charges
them, so a request answered by an earlier filter was never counted (Istio's stats filter
counts it); and they are matched one by one, so a request from the last of 2,000 known
sources cost the inbound sidecar 2.1 million instructions against 180 thousand with the
tables (``benchmarks/source_matching.py``). A denial made *at* the router (an RBAC shadow
rule and a route answering 403) was rejected: a route config that is missing or late would
then let a denied request through, where the RBAC filter in the listener never does.

Every outbound connection manager (sidecars, the mesh proxy, gateways) counts its requests
with the same stats access logger (:func:`outbound_access_log`), tagged with the upstream
cluster instead of the source: a request the client side answers itself (a fault injected
abort, no route) is counted too, and every series of both reporters carries Envoy's
response flags and the response code, durations and body sizes included (Istio's
``istio_request_bytes``, ``istio_response_bytes``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.core.v3 import extension_pb2 as core_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.data.accesslog.v3 import accesslog_pb2 as accesslog_data_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    header_mutation_pb2 as early_hm,
)
from envoy.type.matcher.v3 import http_inputs_pb2
from google.protobuf import json_format, struct_pb2
from xds.core.v3 import extension_pb2 as xds_extension_pb2
from xds.type.matcher.v3 import matcher_pb2
from xds.type.matcher.v3 import regex_pb2 as xds_regex_pb2
from xds.type.matcher.v3 import string_pb2 as xds_string_pb2
from xds.type.v3 import typed_struct_pb2

from meshpilot.mesh.model import ProxyNode
from meshpilot.mesh.sources import (
    CLUSTER_TAG,
    CODE_TAG,
    DURATION_STAT,
    FLAGS_TAG,
    GRPC_TAG,
    OUTBOUND_STATS,
    PEER_TAG,
    REQUEST_BYTES_STAT,
    REQUESTS_STAT,
    RESPONSE_BYTES_STAT,
    SOURCE_HEADER,
    SOURCE_TAG,
    TCP_CLOSED_STAT,
    TCP_OPENED_STAT,
    TCP_RECEIVED_STAT,
    TCP_SENT_STAT,
    UNKNOWN,
    UNKNOWN_SOURCE,
    counted_name,
    inbound_stat_prefix,
    inbound_tcp_stat_prefix,
    node_source_id,
    source_identity,
    spiffe_id,
)
from meshpilot.xds.translate import pb, retry_on_primary
from meshpilot.xds.translate.names import TYPE_ROUTE
from meshpilot.xds.translate.tls import PEER_PRINCIPAL_HEADER

EARLY_MUTATION = "envoy.http.early_header_mutation.header_mutation"
STATS_LOGGER = "envoy.access_loggers.stats"
STATS_LOGGER_CONFIG = "type.googleapis.com/envoy.extensions.access_loggers.stats.v3.Config"
CEL_FILTER = "envoy.access_loggers.extension_filters.cel"

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


def _route_action(template: rc.Route, name: str) -> matcher_pb2.Matcher.OnMatch:
    route = rc.Route()
    route.CopyFrom(template)
    route.name = name
    return matcher_pb2.Matcher.OnMatch(action=xds_extension_pb2.TypedExtensionConfig(
        name=name, typed_config=pb.pack(route)))


def _header(name: str) -> xds_extension_pb2.TypedExtensionConfig:
    return xds_extension_pb2.TypedExtensionConfig(name=name, typed_config=pb.pack(
        http_inputs_pb2.HttpRequestHeaderMatchInput(header_name=name)))


def _table(header: str, entries: Mapping[str, matcher_pb2.Matcher.OnMatch],
           otherwise: matcher_pb2.Matcher.OnMatch) -> matcher_pb2.Matcher.OnMatch:
    """One hash lookup of ``header``'s value in ``entries``; ``otherwise`` when it is
    not there (or absent)."""
    if not entries:  # Envoy wants a table with something in it
        return otherwise
    table = matcher_pb2.Matcher.MatcherTree.MatchMap()
    for key in sorted(entries):
        table.map[key].CopyFrom(entries[key])
    return matcher_pb2.Matcher.OnMatch(matcher=matcher_pb2.Matcher(
        matcher_tree=matcher_pb2.Matcher.MatcherTree(input=_header(header),
                                                     exact_match_map=table),
        on_no_match=otherwise))


def _present(header: str, then: matcher_pb2.Matcher.OnMatch,
             otherwise: matcher_pb2.Matcher.OnMatch) -> matcher_pb2.Matcher.OnMatch:
    """``then`` when ``header`` is there at all, else ``otherwise``."""
    anything = xds_string_pb2.StringMatcher(safe_regex=xds_regex_pb2.RegexMatcher(
        google_re2=xds_regex_pb2.RegexMatcher.GoogleRE2(), regex=".+"))
    predicate = matcher_pb2.Matcher.MatcherList.Predicate(
        single_predicate=matcher_pb2.Matcher.MatcherList.Predicate.SinglePredicate(
            input=_header(header), value_match=anything))
    return matcher_pb2.Matcher.OnMatch(matcher=matcher_pb2.Matcher(
        matcher_list=matcher_pb2.Matcher.MatcherList(matchers=[
            matcher_pb2.Matcher.MatcherList.FieldMatcher(predicate=predicate, on_match=then)]),
        on_no_match=otherwise))


def counting_matcher(template: rc.Route, sources: Iterable[str], trust_domain: str
                     ) -> matcher_pb2.Matcher:
    """The virtual host's route table: a copy of ``template`` per counted source, named
    after it (:func:`~meshpilot.mesh.sources.counted_name`).

    A request is looked up by its peer principal header (the caller's certificate, on the
    mTLS chain only), then by the source id it claims among the known sources of that
    identity; without the header (plaintext), by its claim among every known source.
    Anything else is :data:`~meshpilot.mesh.sources.UNKNOWN_SOURCE`, over mTLS when the
    header is there. Two hash lookups, whatever the number of sources: unlike a list of
    matches, the cost does not grow with the mesh.
    """
    def route(source: str, authenticated: bool) -> matcher_pb2.Matcher.OnMatch:
        return _route_action(template, counted_name(source, authenticated))

    by_identity: dict[str, dict[str, matcher_pb2.Matcher.OnMatch]] = {}
    plaintext: dict[str, matcher_pb2.Matcher.OnMatch] = {}
    for source in sources:
        namespace, account = source_identity(source)
        if account != UNKNOWN:
            by_identity.setdefault(spiffe_id(trust_domain, namespace, account), {})[
                source] = route(source, True)
        plaintext[source] = route(source, False)
    unknown_mtls = route(UNKNOWN_SOURCE, True)
    proved = {identity: _table(SOURCE_HEADER, claims, unknown_mtls)
              for identity, claims in by_identity.items()}
    not_proved = _present(PEER_PRINCIPAL_HEADER, unknown_mtls,
                          _table(SOURCE_HEADER, plaintext, route(UNKNOWN_SOURCE, False)))
    return _table(PEER_PRINCIPAL_HEADER, proved, not_proved).matcher  # never a bare action


def count_sources(config: route_pb2.RouteConfiguration, sources: Iterable[str],
                  trust_domain: str) -> None:
    """An inbound route config's virtual hosts route with :func:`counting_matcher`, their
    one route as the template (in place)."""
    known = tuple(sources)
    for vhost in config.virtual_hosts:
        (template,) = vhost.routes
        vhost.matcher.CopyFrom(counting_matcher(template, known, trust_domain))
        del vhost.routes[:]


def inbound_access_log(container_port: int, *, grpc: bool = False) -> accesslog_pb2.AccessLog:
    """The stats access logger of an inbound HTTP listener: per request, one count under
    its counted source (the route's name), response code and response flags, and its
    duration (first byte in to last byte out, as Istio measures) and body sizes under the
    same names.

    Envoy documents this logger as work in progress and warns that tags taken from
    requests can make stats without bound; here the tags are the route's name (one of the
    names the route config gives), the response code and Envoy's response flags (a
    fixed alphabet), and the scope is capped besides.
    The config travels as a TypedStruct: the Python protos lag Envoy's, which wants
    ``stats_scope`` where they still have a deprecated ``stat_prefix``. The scope is not
    shared between the instances of a listener (``sharing_name``): Envoy 1.40 crashes on
    it when it validates a config. A listener replaced by a policy change keeps adding to
    the same counters (stats of one name are one stat while both listeners hold it; seen
    end to end), and a counter that restarts from zero all the same is a reset, which
    telemetry tells and adds up (``meshpilot.telemetry.store``).

    ``grpc`` (a gRPC port): the count also carries the gRPC status of the response, as a
    number (Istio's ``grpc_response_status``): from the trailers or a trailers-only
    response, else derived from the HTTP status (a request the sidecar refused). At most
    17 values (gRPC's codes), so the bound on the names holds.
    """
    return _request_logger(inbound_stat_prefix(container_port),
                           {"name": SOURCE_TAG, "value_format": "%ROUTE_NAME%"}, grpc=grpc)


def outbound_access_log() -> accesslog_pb2.AccessLog:
    """The stats access logger of an outbound connection manager (a sidecar's or the mesh
    proxy's HTTP proxy, a gateway's servers): Istio's ``reporter="source"`` series.

    Counted here rather than from the upstream cluster's own counters because those are
    charged by the router only: a request the client side answers itself never reaches
    them (a fault injected abort, ``FI``; no route, ``NR``), and they carry neither
    Envoy's response flags nor a response code on the durations and sizes. The last tag
    is the upstream cluster (``-`` when there is none), so the names are bounded by the
    clusters the proxy holds, times codes and flags. One logger whatever the routes: a
    weight change (route configs) changes nothing here.
    """
    return _request_logger(OUTBOUND_STATS.rstrip("."),
                           {"name": CLUSTER_TAG, "value_format": "%UPSTREAM_CLUSTER_RAW%"},
                           grpc=True)


def _request_logger(prefix: str, last_tag: Mapping[str, str], *, grpc: bool
                    ) -> accesslog_pb2.AccessLog:
    """A stats access logger counting requests and recording their durations and body
    sizes under ``prefix``, tagged with the response code and flags then ``last_tag``
    (the gRPC status before it on the counters when ``grpc``): see
    :mod:`meshpilot.mesh.sources` for the names."""
    tags = [{"name": CODE_TAG, "value_format": "%RESPONSE_CODE%"},
            {"name": FLAGS_TAG, "value_format": "%RESPONSE_FLAGS%"}]
    counter_tags = [*tags, {"name": GRPC_TAG, "value_format": "%GRPC_STATUS_NUMBER%"},
                    dict(last_tag)] if grpc else [*tags, dict(last_tag)]
    histogram_tags = [*tags, dict(last_tag)]
    config = {
        "stats_scope": {"prefix": prefix, "max_counters": MAX_COUNTERS,
                        "max_histograms": MAX_HISTOGRAMS},
        "counters": [{"stat": {"name": REQUESTS_STAT, "tags": counter_tags},
                      "value_fixed": 1}],
        "histograms": [
            {"stat": {"name": stat, "tags": histogram_tags}, "unit": unit,
             "value_format": value}
            for stat, unit, value in (
                (DURATION_STAT, "Milliseconds", "%DURATION%"),
                (REQUEST_BYTES_STAT, "Bytes", "%BYTES_RECEIVED%"),
                (RESPONSE_BYTES_STAT, "Bytes", "%BYTES_SENT%"))],
    }
    return _stats_logger(config)


def answered_access_log() -> accesslog_pb2.AccessLog:
    """The stats access logger of an outbound connection manager whose proxy holds
    retry-on-primary aggregate clusters (:mod:`.retry_on_primary`): it counts, besides
    :func:`outbound_access_log`, the requests routed to such a cluster, with the
    upstream host that gave the final answer after the aggregate's name
    (``retry_on_primary|<canary>|<primary>|<address:port>``).

    Envoy names the route's cluster, the aggregate, in ``%UPSTREAM_CLUSTER_RAW%`` and
    ``%UPSTREAM_CLUSTER%`` whichever member answered (seen with Envoy 1.40), while
    ``%UPSTREAM_HOST%`` is the host of the last attempt: the primary's on a retried
    request. Telemetry reads the member back from that address
    (:mod:`meshpilot.telemetry.istio`) and leaves out the aggregate's own count. A CEL
    filter on the route's cluster keeps every other request out, so the names are
    bounded by the members' hosts; proxies without such a cluster never get this
    logger (their listeners stay byte for byte as they were)."""
    logger = _request_logger(
        OUTBOUND_STATS.rstrip("."),
        {"name": CLUSTER_TAG, "value_format": "%UPSTREAM_CLUSTER_RAW%|%UPSTREAM_HOST%"},
        grpc=True)
    logger.filter.extension_filter.CopyFrom(accesslog_pb2.ExtensionFilter(
        name=CEL_FILTER, typed_config=pb.pack(cel_pb2.ExpressionFilter(
            expression=f"xds.cluster_name.startsWith('{retry_on_primary.PREFIX}|')"))))
    return logger


def with_outbound_counting(listener: listener_pb2.Listener, *, retrying: bool = False
                           ) -> listener_pb2.Listener:
    """``listener`` with :func:`outbound_access_log` on every HTTP connection manager of
    its chains when it is an outbound listener (in place; returned for chaining), and
    :func:`answered_access_log` too when ``retrying`` (its proxy holds retry-on-primary
    clusters). Done after the listeners are built, as the file access log is, so every
    outbound listener a proxy gets counts the same way."""
    if listener.traffic_direction != base_pb2.OUTBOUND:
        return listener
    loggers = [outbound_access_log(), *([answered_access_log()] if retrying else [])]
    chains = [*listener.filter_chains]
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        for network_filter in chain.filters:
            manager = hcm.HttpConnectionManager()
            if network_filter.typed_config.Is(manager.DESCRIPTOR):
                network_filter.typed_config.Unpack(manager)
                manager.access_log.extend(loggers)
                network_filter.typed_config.CopyFrom(pb.pack(manager))
    return listener


def inbound_tcp_close_log(container_port: int, mtls: bool) -> accesslog_pb2.AccessLog:
    """The stats access logger of the plaintext chain of an inbound TCP port: one count
    per closed connection (a tcp_proxy writes its access log when the connection ends),
    under ``meshpilot.<chain's stat prefix>``. The chain's tcp_proxy counts the opened ones
    and the bytes itself, but keeps no count of closes, and the cluster's count cannot tell
    the chains apart. One fixed name, no tags: nothing a client sends adds a stat."""
    config = {
        "stats_scope": {"prefix": "meshpilot." + inbound_tcp_stat_prefix(container_port, mtls),
                        "max_counters": 1, "max_histograms": 1},
        "counters": [{"stat": {"name": TCP_CLOSED_STAT}, "value_fixed": 1}],
    }
    return _stats_logger(config)


EARLY_DATA_BYTES = 65_536
MAX_PEER_COUNTERS = 20_000
"""Cap on the per-caller counters of one inbound TCP port (four per identity the mesh's
CA certified): a safety net, not a limit a mesh is expected to reach."""


def count_tcp_callers(proxy: tcp_proxy_pb2.TcpProxy, container_port: int) -> None:
    """The mutual TLS chain's tcp_proxy counts its connections by caller (in place):
    Istio labels a destination's TCP series with the caller it learns over mTLS, and here
    the caller's certificate names it. One logger counts a connection when its upstream
    is connected (the tcp_proxy logs then too), another its close and its bytes each way
    when it ends; both tagged with the peer's SPIFFE ID, which only the mesh's CA can
    vouch for, so a client cannot make names at will. The upstream is connected after
    the TLS handshake, so that the connect knows the peer (a client always speaks first
    in TLS, so server-first protocols are served as before). A connection's bytes are counted
    when it closes (Envoy's periodic TCP log repeats the running totals, which a counter
    cannot take), where Istio's proxies also report open connections every 15 seconds."""
    prefix = "meshpilot." + inbound_tcp_stat_prefix(container_port, True)
    peer = [{"name": PEER_TAG, "value_format": "%DOWNSTREAM_PEER_URI_SAN%"}]
    scope = {"prefix": prefix, "max_counters": MAX_PEER_COUNTERS, "max_histograms": 1}
    opened = _stats_logger({"stats_scope": scope, "counters": [
        {"stat": {"name": TCP_OPENED_STAT, "tags": peer}, "value_fixed": 1}]})
    opened.filter.log_type_filter.types.append(accesslog_data_pb2.TcpUpstreamConnected)
    ended = _stats_logger({"stats_scope": scope, "counters": [
        {"stat": {"name": TCP_CLOSED_STAT, "tags": peer}, "value_fixed": 1},
        {"stat": {"name": TCP_RECEIVED_STAT, "tags": peer}, "value_format": "%BYTES_RECEIVED%"},
        {"stat": {"name": TCP_SENT_STAT, "tags": peer}, "value_format": "%BYTES_SENT%"}]})
    ended.filter.log_type_filter.types.append(accesslog_data_pb2.TcpConnectionEnd)
    proxy.access_log.extend([opened, ended])
    proxy.access_log_options.flush_access_log_on_connected = True
    # connect upstream once the caller's certificate is known (by default the tcp_proxy
    # connects at accept, in parallel with the handshake, and the connect is then
    # logged with no peer: seen end to end for about one connection in five)
    proxy.upstream_connect_mode = tcp_proxy_pb2.ON_DOWNSTREAM_TLS_HANDSHAKE
    # what the caller sends before the upstream is up is held, up to this much (Envoy
    # wants the bound with this mode; past it the caller is read no further until then)
    proxy.max_early_data_bytes.value = EARLY_DATA_BYTES


def _stats_logger(config: Mapping[str, object]) -> accesslog_pb2.AccessLog:
    typed = typed_struct_pb2.TypedStruct(
        type_url=STATS_LOGGER_CONFIG, value=json_format.ParseDict(config, struct_pb2.Struct()))
    return accesslog_pb2.AccessLog(name=STATS_LOGGER, typed_config=pb.pack(typed))


def mark_gateway_routes(out: dict, node: ProxyNode) -> None:
    """A gateway's route configs set its source header (in place). Sidecars set theirs
    in their outbound listener: see :func:`source_mutation`."""
    header = _overwrite(SOURCE_HEADER, node_source_id(node))
    for config in out[TYPE_ROUTE].values():
        config.request_headers_to_add.append(header)
