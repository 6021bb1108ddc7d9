"""HTTP filters of the connection managers and their per-route configs (fault, cors).

The fault and cors filters sit in every HTTP chain, unconfigured, before the router, and
*disabled*: Envoy then leaves them out of a request's filter chain unless its route
carries a ``typed_per_filter_config`` for them, which :func:`per_filter` writes for every
route whose VirtualService asks for a fault or a corsPolicy (a valid per-route config
enables a disabled filter). Disabled, they cost a request next to nothing on the routes
that use neither (``benchmarks/latency.py --instructions`` counts it; benchmarks/README.md
has the figures). The chain itself stays the same for every listener, so switching
a fault on changes a route config, never a listener (no drain).
"""

from __future__ import annotations

from types import MappingProxyType

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf import any_pb2

from meshpilot.api.networking import CorsPolicy, HTTPFaultInjection, StringMatch
from meshpilot.xds.translate import names, pb
from meshpilot.xds.translate.matches import string_matcher

# gRPC status names Istio accepts in ``abort.grpcStatus``.
GRPC_CODES = MappingProxyType({
    name: code
    for code, name in enumerate(
        [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ]
    )
})


def http_filters(*, fault_and_cors: bool = True) -> list[hcm.HttpFilter]:
    """The chain: [fault, cors (both disabled unless a route enables them)] + router."""
    chain = [hcm.HttpFilter(name=names.ROUTER_FILTER, typed_config=pb.pack(router_pb2.Router()))]
    if fault_and_cors:
        chain[:0] = [
            hcm.HttpFilter(name=name, typed_config=pb.pack(config), disabled=True)
            for name, config in (
                (names.FAULT_FILTER, fault_pb2.HTTPFault()),
                (names.CORS_FILTER, cors_pb2.Cors()),
            )
        ]
    return chain


def fault(spec: HTTPFaultInjection) -> any_pb2.Any | None:
    """Istio fault → HTTPFault; an omitted percentage means every request."""
    out = fault_pb2.HTTPFault()
    delay = spec.delay
    if delay is not None and delay.fixed_delay:  # Envoy has no exponential delay
        percent = (
            delay.percentage.value
            if delay.percentage
            else delay.percent
            if delay.percent is not None
            else 100.0
        )
        out.delay.CopyFrom(
            common_fault.FaultDelay(
                fixed_delay=pb.duration(delay.fixed_delay), percentage=pb.fraction(percent)
            )
        )
    abort = spec.abort
    if abort is not None and (abort.http_status or abort.grpc_status):
        percent = abort.percentage.value if abort.percentage else 100.0
        out.abort.percentage.CopyFrom(pb.fraction(percent))
        if abort.http_status:
            out.abort.http_status = abort.http_status
        else:
            code = abort.grpc_status or ""
            out.abort.grpc_status = int(code) if code.isdigit() else GRPC_CODES.get(code, 14)
    if not out.HasField("delay") and not out.HasField("abort"):
        return None
    return pb.pack(out)


def cors(spec: CorsPolicy) -> any_pb2.Any:
    """Istio corsPolicy → the cors filter's per-route CorsPolicy."""
    out = cors_pb2.CorsPolicy()
    origins = [*spec.allow_origins, *(StringMatch(exact=o) for o in spec.allow_origin)]
    out.allow_origin_string_match.extend(string_matcher(o) for o in origins)
    if spec.allow_methods:
        out.allow_methods = ",".join(spec.allow_methods)
    if spec.allow_headers:
        out.allow_headers = ",".join(spec.allow_headers)
    if spec.expose_headers:
        out.expose_headers = ",".join(spec.expose_headers)
    if spec.max_age:
        out.max_age = str(int(pb.duration(spec.max_age).seconds))
    if spec.allow_credentials is not None:
        out.allow_credentials.value = spec.allow_credentials
    if spec.unmatched_preflights == "IGNORE":
        out.forward_not_matching_preflights.value = False
    elif spec.unmatched_preflights == "FORWARD":
        out.forward_not_matching_preflights.value = True
    return pb.pack(out)


def per_filter(
    route: rc.Route, fault_spec: HTTPFaultInjection | None, cors_spec: CorsPolicy | None
) -> None:
    """The route's fault and cors configs; each one present enables its (disabled) filter
    for this route only."""
    if fault_spec is not None:
        packed = fault(fault_spec)
        if packed is not None:
            route.typed_per_filter_config[names.FAULT_FILTER].CopyFrom(packed)
    if cors_spec is not None:
        route.typed_per_filter_config[names.CORS_FILTER].CopyFrom(cors(cors_spec))
