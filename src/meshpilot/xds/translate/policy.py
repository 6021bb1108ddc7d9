"""DestinationRule traffic policy → cluster settings (and the route hash policy).

Merging follows Istio's MergeTrafficPolicy: a subset's policy replaces the top-level
one field by field (loadBalancer, connectionPool, outlierDetection, tls); a
``portLevelSettings`` entry for the cluster's port replaces all four fields at once
(an omitted field falls back to defaults, as Istio documents).

Choices: ``UNSPECIFIED`` (no policy) is LEAST_REQUEST, Istio's default since 1.14;
``LEAST_CONN`` is LEAST_REQUEST; ``PASSTHROUGH`` is not translated (the cluster keeps
the default) because the HTTP-proxy data path has no original destination to pass
through to. Zero connection-pool limits mean "unset" (as in Istio).
"""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from meshpilot.api.base import parse_duration
from meshpilot.api.networking import (
    ConsistentHashLB,
    DestinationRule,
    LoadBalancerSettings,
    PortTrafficPolicy,
    TcpKeepalive,
    TrafficPolicy,
)
from meshpilot.xds.translate import pb

DEFAULT_CONNECT_TIMEOUT = "10s"
DEFAULT_RING_SIZE = 1024
HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_FIELDS = ("load_balancer", "connection_pool", "outlier_detection", "tls")


def _port_level(policy: TrafficPolicy | None, port: int) -> TrafficPolicy | None:
    if policy is None:
        return None
    match: PortTrafficPolicy | None = next(
        (p for p in policy.port_level_settings if p.port and p.port.number == port), None
    )
    if match is None:
        return policy
    return policy.model_copy(update={f: getattr(match, f) for f in _FIELDS})


def effective_policy(
    rule: DestinationRule | None, subset: str | None, port: int
) -> TrafficPolicy | None:
    """The traffic policy for cluster (port, subset) of the rule's host."""
    if rule is None:
        return None
    merged = _port_level(rule.spec.traffic_policy, port)
    chosen = next((s for s in rule.spec.subsets if s.name == subset), None) if subset else None
    if chosen is None or chosen.traffic_policy is None:
        return merged
    own = chosen.traffic_policy
    update = {f: getattr(own, f) for f in _FIELDS if getattr(own, f) is not None}
    merged = (merged or TrafficPolicy()).model_copy(
        update={**update, "port_level_settings": own.port_level_settings}
    )
    return _port_level(merged, port)


def consistent_hash(policy: TrafficPolicy | None) -> ConsistentHashLB | None:
    lb = policy.load_balancer if policy else None
    return lb.consistent_hash if lb else None


def hash_policies(policy: TrafficPolicy | None) -> list[rc.RouteAction.HashPolicy]:
    """consistentHash key → RouteAction.hash_policy (what the ring hashes on)."""
    ch = consistent_hash(policy)
    if ch is None:
        return []
    hp = rc.RouteAction.HashPolicy
    if ch.http_header_name:
        return [hp(header=hp.Header(header_name=ch.http_header_name))]
    if ch.http_cookie:
        cookie = hp.Cookie(name=ch.http_cookie.name, path=ch.http_cookie.path or "")
        if ch.http_cookie.ttl:
            cookie.ttl.CopyFrom(pb.duration(ch.http_cookie.ttl))
        return [hp(cookie=cookie)]
    if ch.use_source_ip:
        return [hp(connection_properties=hp.ConnectionProperties(source_ip=True))]
    if ch.http_query_parameter_name:
        return [hp(query_parameter=hp.QueryParameter(name=ch.http_query_parameter_name))]
    return []


def _load_balancer(cluster: cluster_pb2.Cluster, policy: TrafficPolicy | None) -> None:
    ch = consistent_hash(policy)
    if ch is not None:
        if ch.maglev is not None:
            cluster.lb_policy = cluster_pb2.Cluster.MAGLEV
            if ch.maglev.table_size:
                cluster.maglev_lb_config.table_size.value = ch.maglev.table_size
            return
        cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
        size = (ch.ring_hash.minimum_ring_size if ch.ring_hash else None) or ch.minimum_ring_size
        cluster.ring_hash_lb_config.minimum_ring_size.value = size or DEFAULT_RING_SIZE
        return
    simple = policy.load_balancer.simple if policy and policy.load_balancer else None
    cluster.lb_policy = {
        "ROUND_ROBIN": cluster_pb2.Cluster.ROUND_ROBIN,
        "RANDOM": cluster_pb2.Cluster.RANDOM,
    }.get(simple or "", cluster_pb2.Cluster.LEAST_REQUEST)
    if policy and policy.load_balancer:
        _slow_start(cluster, policy.load_balancer)


def _slow_start(cluster: cluster_pb2.Cluster, lb: LoadBalancerSettings) -> None:
    """``warmup`` (or the older ``warmupDurationSecs``): a new endpoint's share of traffic
    grows over the window (Envoy's slow start), as Istio does for ROUND_ROBIN and
    LEAST_REQUEST only; the other algorithms take no warm-up, in Istio neither."""
    window = lb.warmup.duration if lb.warmup else lb.warmup_duration_secs
    if not window:
        return
    if cluster.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN:
        config = cluster.round_robin_lb_config.slow_start_config
    elif cluster.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST:
        config = cluster.least_request_lb_config.slow_start_config
    else:
        return
    config.slow_start_window.CopyFrom(pb.duration(window))
    if lb.warmup and lb.warmup.aggression is not None:
        config.aggression.default_value = lb.warmup.aggression
        config.aggression.runtime_key = "meshpilot.slow_start.aggression"
    if lb.warmup and lb.warmup.minimum_percent is not None:
        config.min_weight_percent.value = float(lb.warmup.minimum_percent)


def _circuit_breakers(cluster: cluster_pb2.Cluster, policy: TrafficPolicy | None) -> None:
    pool = policy.connection_pool if policy else None
    tcp = pool.tcp if pool else None
    http = pool.http if pool else None
    cluster.circuit_breakers.CopyFrom(
        circuit_breaker_pb2.CircuitBreakers(
            thresholds=[
                circuit_breaker_pb2.CircuitBreakers.Thresholds(
                    max_connections=pb.u32((tcp and tcp.max_connections) or pb.U32_MAX),
                    max_pending_requests=pb.u32(
                        (http and http.http1_max_pending_requests) or pb.U32_MAX
                    ),
                    max_requests=pb.u32((http and http.http2_max_requests) or pb.U32_MAX),
                    max_retries=pb.u32((http and http.max_retries) or pb.U32_MAX),
                    track_remaining=True,
                )
            ]
        )
    )
    cluster.connect_timeout.CopyFrom(
        pb.duration((tcp and tcp.connect_timeout) or DEFAULT_CONNECT_TIMEOUT)
    )
    if tcp and tcp.tcp_keepalive is not None:
        _keepalive(cluster, tcp.tcp_keepalive)


def _keepalive(cluster: cluster_pb2.Cluster, spec: TcpKeepalive) -> None:
    """TCP keepalive on upstream connections (Istio: ``tcpKeepalive: {}`` switches it on
    with the operating system's probes, time and interval; given ones are set)."""
    keepalive = cluster.upstream_connection_options.tcp_keepalive
    keepalive.SetInParent()
    if spec.probes is not None:
        keepalive.keepalive_probes.value = spec.probes
    if spec.time:
        keepalive.keepalive_time.value = max(1, round(parse_duration(spec.time)))
    if spec.interval:
        keepalive.keepalive_interval.value = max(1, round(parse_duration(spec.interval)))


def _outlier(cluster: cluster_pb2.Cluster, policy: TrafficPolicy | None) -> None:
    od = policy.outlier_detection if policy else None
    if od is None:
        return
    out = outlier_detection_pb2.OutlierDetection()
    if od.consecutive_5xx_errors is not None:
        out.consecutive_5xx.value = od.consecutive_5xx_errors
        out.enforcing_consecutive_5xx.value = 100 if od.consecutive_5xx_errors > 0 else 0
    gateway = od.consecutive_gateway_errors
    if gateway is None and od.consecutive_errors:  # deprecated: meant 502/503/504
        gateway = od.consecutive_errors
    if gateway is not None:
        out.consecutive_gateway_failure.value = gateway
        out.enforcing_consecutive_gateway_failure.value = 100 if gateway > 0 else 0
    if od.consecutive_local_origin_failures is not None:
        out.split_external_local_origin_errors = True
        out.consecutive_local_origin_failure.value = od.consecutive_local_origin_failures
    elif od.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
    if od.interval:
        out.interval.CopyFrom(pb.duration(od.interval))
    if od.base_ejection_time:
        out.base_ejection_time.CopyFrom(pb.duration(od.base_ejection_time))
    if od.max_ejection_percent:  # 0 is unset in Istio's API: Envoy's default (10 %) holds
        out.max_ejection_percent.value = od.max_ejection_percent
    cluster.outlier_detection.CopyFrom(out)
    cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
        percent_pb2.Percent(value=float(od.min_health_percent or 0))
    )


def _protocol_options(
    cluster: cluster_pb2.Cluster, policy: TrafficPolicy | None, http2: bool | None
) -> None:
    http = policy.connection_pool.http if policy and policy.connection_pool else None
    tcp = policy.connection_pool.tcp if policy and policy.connection_pool else None
    # Istio: the HTTP idle timeout, else the TCP one (it applies to HTTP connections too).
    idle_timeout = (http and http.idle_timeout) or (tcp and tcp.idle_timeout)
    options = hpo.HttpProtocolOptions()
    if http2 is None:  # the protocol the request came in with
        follow = options.use_downstream_protocol_config
        follow.http_protocol_options.CopyFrom(protocol_pb2.Http1ProtocolOptions())
        follow.http2_protocol_options.CopyFrom(protocol_pb2.Http2ProtocolOptions())
    elif http2:
        options.explicit_http_config.http2_protocol_options.CopyFrom(
            protocol_pb2.Http2ProtocolOptions())
    else:
        options.explicit_http_config.http_protocol_options.CopyFrom(
            protocol_pb2.Http1ProtocolOptions())
    if idle_timeout:
        options.common_http_protocol_options.idle_timeout.CopyFrom(pb.duration(idle_timeout))
    if tcp and tcp.max_connection_duration:  # as Istio: on the HTTP connection pool
        options.common_http_protocol_options.max_connection_duration.CopyFrom(
            pb.duration(tcp.max_connection_duration))
    if http and http.max_requests_per_connection:
        options.common_http_protocol_options.max_requests_per_connection.CopyFrom(
            wrappers_pb2.UInt32Value(value=http.max_requests_per_connection)
        )
    cluster.typed_extension_protocol_options[HTTP_OPTIONS_KEY].CopyFrom(pb.pack(options))


def apply_policy(
    cluster: cluster_pb2.Cluster, policy: TrafficPolicy | None, *, http2: bool | None = False
) -> None:
    """Set lb policy, breakers, connect timeout, outlier detection and HTTP options.

    ``http2``: True speaks HTTP/2 upstream (HTTP2 and GRPC ports), False HTTP/1.1, None
    the protocol each request arrived in (Envoy's ``use_downstream_protocol_config``,
    what Istio gives a port whose protocol it does not know)."""
    _load_balancer(cluster, policy)
    _circuit_breakers(cluster, policy)
    _outlier(cluster, policy)
    _protocol_options(cluster, policy, http2)
