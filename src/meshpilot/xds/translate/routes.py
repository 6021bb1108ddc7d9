"""VirtualService HTTP rules → Envoy routes, with Istio's semantics.

Rules keep their order (first match wins); each applicable ``match`` entry becomes
one Envoy route carrying the rule's action; a rule with no ``match`` is a catch-all
(prefix ``/``); a rule whose matches all fail :func:`matches.applies` for this proxy
disappears. A ``delegate`` rule stands for the rules of the VirtualService it names,
merged as :mod:`.delegation` says.

Choices where Istio is loose: ``retries`` without ``attempts`` keeps Istio's 2
retries; the hash policy comes from the first destination's DestinationRule;
``set``/``add`` of ``host``/``:authority`` becomes ``host_rewrite_literal`` (Envoy
refuses to edit pseudo-headers) and other ``:``-headers are ignored.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from types import MappingProxyType

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2,
)

from meshpilot.api.flagger import RETRY_ON_PRIMARY_ANNOTATION
from meshpilot.api.networking import (
    Destination,
    HeaderOperations,
    Headers,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRoute,
    HTTPRouteDestination,
    VirtualService,
)
from meshpilot.mesh import index
from meshpilot.mesh.model import MeshSnapshot, Named, ProxyNode
from meshpilot.xds.translate import filters, names, pb, retry_on_primary
from meshpilot.xds.translate.delegation import merged_rule
from meshpilot.xds.translate.matches import Where, applies, regex, route_match
from meshpilot.xds.translate.policy import effective_policy, hash_policies

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
_REDIRECT_CODES = MappingProxyType({
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
})


@dataclass(frozen=True)
class Ctx:
    snapshot: MeshSnapshot
    node: ProxyNode
    where: Where
    retry_on_primary: bool = False
    """Whether a VirtualService's ``meshpilot.io/retry-on-primary`` is acted on here
    (sidecars and the mesh proxy, whose classes get the aggregate clusters it names)."""


def _target(dest: Destination, vs_ns: str, ctx: Ctx) -> tuple[str, int]:
    host, service = index.service(ctx.snapshot, dest.host, vs_ns)
    wanted = dest.port.number if dest.port else None
    return host, index.destination_port(service, wanted, ctx.where.port)


def cluster_for(dest: Destination, vs_ns: str, ctx: Ctx) -> str:
    host, port = _target(dest, vs_ns, ctx)
    return names.outbound_cluster(port, dest.subset, host)


@dataclass
class HeaderEdits:
    request_add: list[base_pb2.HeaderValueOption]
    request_remove: list[str]
    response_add: list[base_pb2.HeaderValueOption]
    response_remove: list[str]
    host: str | None = None


def _ops(ops: HeaderOperations | None, *, request: bool) -> tuple[list, list[str], str | None]:
    if ops is None:
        return [], [], None
    add, host = [], None
    for action, items in ((_OVERWRITE, ops.set_), (_APPEND, ops.add)):
        for key, value in items.items():
            lower = key.lower()
            if request and lower in ("host", ":authority"):
                host = value
            elif not lower.startswith(":") and lower != "host":
                add.append(
                    base_pb2.HeaderValueOption(
                        header=base_pb2.HeaderValue(key=key, value=value), append_action=action
                    )
                )
    remove = [h for h in ops.remove if not h.startswith(":") and h.lower() != "host"]
    return add, remove, host


def header_edits(headers: Headers | None) -> HeaderEdits:
    req_add, req_remove, host = _ops(headers.request if headers else None, request=True)
    resp_add, resp_remove, _ = _ops(headers.response if headers else None, request=False)
    return HeaderEdits(req_add, req_remove, resp_add, resp_remove, host)


def _apply_edits(target: rc.Route | rc.WeightedCluster.ClusterWeight, edits: HeaderEdits) -> None:
    target.request_headers_to_add.extend(edits.request_add)
    target.request_headers_to_remove.extend(edits.request_remove)
    target.response_headers_to_add.extend(edits.response_add)
    target.response_headers_to_remove.extend(edits.response_remove)


def retry_policy(spec: HTTPRetry | None) -> rc.RetryPolicy | None:
    """Istio's default retries when absent; ``attempts: 0`` disables them."""
    if spec is not None and spec.attempts == 0:
        return None
    out = rc.RetryPolicy(
        retry_on=DEFAULT_RETRY_ON,
        num_retries=pb.u32(spec.attempts if spec and spec.attempts else 2),
        retriable_status_codes=[503],
        host_selection_retry_max_attempts=5,
    )
    if spec is None or spec.retry_ignore_previous_hosts is not False:
        out.retry_host_predicate.add(
            name="envoy.retry_host_predicates.previous_hosts",
            typed_config=pb.pack(previous_hosts_pb2.PreviousHostsPredicate()),
        )
    if spec is None:
        return out
    if spec.retry_on:
        parts = [p.strip() for p in spec.retry_on.split(",") if p.strip()]
        codes = [int(p) for p in parts if p.isdigit()]
        words = [p for p in parts if not p.isdigit()]
        if codes and "retriable-status-codes" not in words:
            words.append("retriable-status-codes")
        out.retry_on = ",".join(words)
        del out.retriable_status_codes[:]
        out.retriable_status_codes.extend(codes)
    if spec.per_try_timeout:
        out.per_try_timeout.CopyFrom(pb.duration(spec.per_try_timeout))
    if spec.backoff:
        out.retry_back_off.base_interval.CopyFrom(pb.duration(spec.backoff))
    if spec.retry_remote_localities:
        out.retry_priority.CopyFrom(remote_localities_priority())
    return out


def remote_localities_priority() -> rc.RetryPolicy.RetryPriority:
    """``retryRemoteLocalities``: a retry moves on from the priorities (localities, see
    :mod:`~meshpilot.xds.translate.locality`) already tried, as Istio configures it."""
    return rc.RetryPolicy.RetryPriority(
        name="envoy.retry_priorities.previous_priorities",
        typed_config=pb.pack(previous_priorities_config_pb2.PreviousPrioritiesConfig(
            update_frequency=2)))


def _mirrors(http: HTTPRoute, vs_ns: str, ctx: Ctx) -> list[rc.RouteAction.RequestMirrorPolicy]:
    targets: list[tuple[Destination, float]] = []
    if http.mirror is not None:
        percent = (
            http.mirror_percentage.value
            if http.mirror_percentage
            else http.mirror_percent
            if http.mirror_percent is not None
            else 100.0
        )
        targets.append((http.mirror, float(percent)))
    targets.extend(
        (m.destination, m.percentage.value if m.percentage else 100.0) for m in http.mirrors
    )
    return [
        rc.RouteAction.RequestMirrorPolicy(
            cluster=cluster_for(d, vs_ns, ctx), runtime_fraction=pb.runtime_fraction(p)
        )
        for d, p in targets
    ]


def _destinations(
    action: rc.RouteAction,
    route: rc.Route,
    dests: list[HTTPRouteDestination],
    vs_ns: str,
    ctx: Ctx,
) -> str | None:
    """Set cluster / weighted_clusters; returns a per-destination host rewrite, if any."""
    kept = dests if len(dests) == 1 else [d for d in dests if (d.weight or 0) > 0]
    if len(kept) == 1:
        action.cluster = cluster_for(kept[0].destination, vs_ns, ctx)
        edits = header_edits(kept[0].headers)
        _apply_edits(route, edits)
        return edits.host
    for d in kept:
        weight = action.weighted_clusters.clusters.add(
            name=cluster_for(d.destination, vs_ns, ctx), weight=pb.u32(d.weight or 0)
        )
        edits = header_edits(d.headers)
        _apply_edits(weight, edits)
        if edits.host:
            weight.host_rewrite_literal = edits.host
    return None


def _route_action(http: HTTPRoute, route: rc.Route, vs_ns: str, ctx: Ctx) -> rc.RouteAction:
    action = rc.RouteAction(timeout=pb.duration(http.timeout or "0s"))
    host = _destinations(action, route, http.route, vs_ns, ctx)
    retry = retry_policy(http.retries)
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    action.request_mirror_policies.extend(_mirrors(http, vs_ns, ctx))
    rewrite = http.rewrite
    if rewrite and rewrite.uri is not None:
        action.prefix_rewrite = rewrite.uri
    if rewrite and rewrite.uri_regex_rewrite is not None:
        action.regex_rewrite.pattern.CopyFrom(regex(rewrite.uri_regex_rewrite.match))
        action.regex_rewrite.substitution = rewrite.uri_regex_rewrite.rewrite
    host = (rewrite.authority if rewrite and rewrite.authority else None) or host
    if host:
        action.host_rewrite_literal = host
    first = http.route[0].destination
    fqdn, port = _target(first, vs_ns, ctx)
    rule = index.destination_rule(ctx.snapshot, fqdn, ctx.node)
    action.hash_policy.extend(hash_policies(effective_policy(rule, first.subset, port)))
    return action


def _redirect(spec: HTTPRedirect) -> rc.RedirectAction:
    out = rc.RedirectAction(
        response_code=_REDIRECT_CODES.get(spec.redirect_code or 301, rc.RedirectAction.FOUND)
    )
    if spec.uri:
        out.path_redirect = spec.uri
    if spec.authority:
        out.host_redirect = spec.authority
    if spec.port:
        out.port_redirect = spec.port
    if spec.scheme:
        out.scheme_redirect = spec.scheme
    return out


def _base(http: HTTPRoute, vs_ns: str, ctx: Ctx) -> rc.Route | None:
    """The route without its match: action, header edits and per-filter configs."""
    route = rc.Route()
    if http.redirect is not None:
        route.redirect.CopyFrom(_redirect(http.redirect))
    elif http.direct_response is not None:
        dr = http.direct_response
        route.direct_response.status = dr.status
        if dr.body and dr.body.string_ is not None:
            route.direct_response.body.inline_string = dr.body.string_
        elif dr.body and dr.body.bytes_ is not None:
            route.direct_response.body.inline_bytes = base64.b64decode(dr.body.bytes_)
    elif http.route:
        route.route.CopyFrom(_route_action(http, route, vs_ns, ctx))
    else:
        return None
    edits = header_edits(http.headers)
    _apply_edits(route, edits)
    if edits.host and route.HasField("route") and not route.route.host_rewrite_literal:
        route.route.host_rewrite_literal = edits.host
    filters.per_filter(route, http.fault, http.cors_policy)
    return route


def http_routes(named: Named[VirtualService], ctx: Ctx) -> list[rc.Route]:
    """All Envoy routes of one VirtualService, for the proxy and port in ``ctx``."""
    out: list[rc.Route] = []
    vs_ns = named.namespace
    retry = _retries_on_primary(named, ctx)
    for http in named.obj.spec.http:
        matches = [m for m in http.match if applies(m, vs_ns, ctx.where)]
        if http.match and not matches:
            continue
        if http.delegate is None:
            if retry:
                out.extend(_retry_routes(http, matches, vs_ns, ctx))
            out.extend(_rule_routes(http, matches, vs_ns, ctx))
            continue
        delegate = index.delegate_target(ctx.snapshot, http.delegate, vs_ns)
        for rule in delegate.obj.spec.http if delegate is not None else ():
            merged = None if rule.delegate else merged_rule(http, matches, rule)
            if merged is not None:
                assert delegate is not None
                kept = [m for m in merged.match if applies(m, delegate.namespace, ctx.where)]
                if not merged.match or kept:
                    out.extend(_rule_routes(merged, kept, delegate.namespace, ctx))
    return out


def _rule_routes(http: HTTPRoute, matches: list[HTTPMatchRequest], vs_ns: str, ctx: Ctx
                 ) -> list[rc.Route]:
    """One rule's routes: its action under each of its applicable ``matches`` (one
    catch-all route when it has none)."""
    base = _base(http, vs_ns, ctx)
    if base is None:
        return []
    out = []
    for m in matches or [None]:
        route = rc.Route()
        route.CopyFrom(base)
        route.name = ".".join(p for p in (http.name, m.name if m else None) if p)
        route.match.CopyFrom(route_match(m))
        out.append(route)
    return out


def _retries_on_primary(named: Named[VirtualService], ctx: Ctx) -> bool:
    return ctx.retry_on_primary and \
        named.obj.metadata.annotations.get(RETRY_ON_PRIMARY_ANNOTATION) == "true"


def _aggregate(primary: HTTPRouteDestination, canary: HTTPRouteDestination, vs_ns: str,
               ctx: Ctx) -> str:
    return retry_on_primary.aggregate_name(cluster_for(canary.destination, vs_ns, ctx),
                                           cluster_for(primary.destination, vs_ns, ctx))


def retry_aggregates(named: Named[VirtualService], ctx: Ctx) -> list[str]:
    """The aggregate clusters a retry-on-primary VirtualService asks the proxy to hold:
    one per rule of two destinations (or of two with weight), whatever their weights
    now. They outlive the routes that name them (a canary at weight 0) so that a retry
    already under way when the routes change still finds its cluster: Envoy keeps
    routing an accepted request by the route it matched, and a cluster removed under it
    answers "no healthy upstream"."""
    if not _retries_on_primary(named, ctx):
        return []
    out = []
    for http in named.obj.spec.http:
        if http.delegate is not None or http.redirect is not None \
                or http.direct_response is not None:
            continue
        weighted = [d for d in http.route if (d.weight or 0) > 0]
        pair = weighted if len(weighted) == 2 else http.route
        if len(pair) == 2:
            out.append(_aggregate(pair[0], pair[1], named.namespace, ctx))
    return out


def _retry_routes(http: HTTPRoute, matches: list[HTTPMatchRequest], vs_ns: str, ctx: Ctx
                  ) -> list[rc.Route]:
    """The routes :mod:`.retry_on_primary` puts before a rule of exactly two
    destinations with weight (primary first); none for any other rule."""
    weighted = [d for d in http.route if (d.weight or 0) > 0]
    if len(weighted) != 2 or http.redirect is not None or http.direct_response is not None:
        return []
    primary, canary = weighted
    aggregate = _aggregate(primary, canary, vs_ns, ctx)
    percent = 100.0 * (canary.weight or 0) / ((canary.weight or 0) + (primary.weight or 0))
    to_canary = _rule_routes(http.model_copy(update={"route": [canary]}), matches, vs_ns, ctx)
    to_primary = _rule_routes(http.model_copy(update={"route": [primary]}), matches, vs_ns,
                              ctx)
    return [*retry_on_primary.canary_routes(to_canary, aggregate, percent),
            *retry_on_primary.primary_routes(to_primary)]


def default_route(host: str, port: int, ctx: Ctx) -> rc.Route:
    """Everything to ``outbound|port||host``: default retries, no timeout, DR hashing."""
    action = rc.RouteAction(
        cluster=names.outbound_cluster(port, None, host), timeout=pb.duration("0s")
    )
    retry = retry_policy(None)
    assert retry is not None
    action.retry_policy.CopyFrom(retry)
    rule = index.destination_rule(ctx.snapshot, host, ctx.node)
    action.hash_policy.extend(hash_policies(effective_policy(rule, None, port)))
    return rc.Route(name="default", match=rc.RouteMatch(prefix="/"), route=action)
