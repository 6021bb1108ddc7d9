"""The objects a Canary makes for Istio, generated as plain dicts ready for the store.

Pure functions of (Canary, target Deployment, rollout state): the same inputs always give
the same objects, so the controller can re-derive them after a restart and write them
again without changing traffic. Names and selectors follow Flagger, so Istio users see
what they expect: ``NAME`` (apex, selects the primary's pods), ``NAME-primary``,
``NAME-canary`` Services, ``NAME-primary`` Deployment, one VirtualService ``NAME`` and a
DestinationRule per destination.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from meshpilot.api.base import parse_duration
from meshpilot.api.flagger import (
    RETRY_ON_PRIMARY_ANNOTATION,
    Canary,
    CanaryAnalysis,
    CustomMetadata,
    SessionAffinity,
)
from meshpilot.delivery import autoscaler_ref, configs
from meshpilot.delivery.state import RolloutState

MANAGED_BY = MappingProxyType({"app.kubernetes.io/managed-by": "meshpilot-delivery"})
CANARY_ANNOTATION = "meshpilot.io/canary"
SELECTOR_KEYS = ("app", "name", "app.kubernetes.io/name")
"""Label keys Flagger looks for in the target's selector, in order."""


def _dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)


def _meta(canary: Canary, name: str, custom: CustomMetadata | None = None,
          **labels: str) -> dict[str, Any]:
    """Metadata of a generated object: the user's ``custom`` labels and annotations
    (Flagger's service.apex / primary / canary), then ``labels``, then the marks that
    make it meshpilot's (those win, so ownership cannot be given away by a label)."""
    return {
        "name": name,
        "namespace": canary.metadata.namespace,
        "labels": {**((custom and custom.labels) or {}), **labels, **MANAGED_BY},
        "annotations": {**((custom and custom.annotations) or {}),
                        CANARY_ANNOTATION: canary.metadata.name},
    }


def owned_meta(canary: Canary, name: str) -> dict[str, Any]:
    """The metadata that marks a generated object ``name`` as this Canary's."""
    return _meta(canary, name)


def selector_label(target: dict[str, Any]) -> tuple[str, str]:
    """(key, value) of the label that tells the target's pods apart, as Flagger picks it."""
    labels = ((target.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    for key in SELECTOR_KEYS:
        if key in labels:
            return key, str(labels[key])
    if labels:
        key = sorted(labels)[0]
        return key, str(labels[key])
    name = (target.get("metadata") or {}).get("name", "")
    return "app", str(name)


def primary_name(canary: Canary) -> str:
    return f"{canary.spec.target_ref.name}-primary"


# --- workloads ------------------------------------------------------------------------


def primary_deployment(
    canary: Canary, target: dict[str, Any], state: RolloutState,
    running: int | None = None,
) -> dict[str, Any]:
    """NAME-primary: the promoted template, relabelled so its pods are told apart.

    ``running``: the replicas the primary runs now; with an autoscalerRef they are its
    autoscaler's to set, so they are kept (Flagger copies the target's count only
    without one)."""
    key, value = selector_label(target)
    spec = copy.deepcopy(target.get("spec") or {})
    template = configs.with_primary_names(
        state.primary_template or spec.get("template") or {},
        {(kind, name) for kind, _, name in (c.partition("/") for c in state.primary_configs)})
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), key: f"{value}-primary"}
    selector = spec.get("selector") or {}
    match = dict(selector.get("matchLabels") or {})
    match[key] = f"{value}-primary"
    spec["selector"] = {**selector, "matchLabels": match}
    spec["template"] = template
    spec["replicas"] = max(1, state.target_replicas)
    if canary.spec.autoscaler_ref is not None and running:
        spec["replicas"] = running
    target_meta = target.get("metadata") or {}
    labels = {**(target_meta.get("labels") or {}), **MANAGED_BY}
    if key in labels:
        labels[key] = f"{value}-primary"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **_meta(canary, primary_name(canary)),
            "labels": labels,
        },
        "spec": spec,
    }


def scaled_target(target: dict[str, Any], replicas: int) -> dict[str, Any] | None:
    """The target Deployment at ``replicas``, or None when it already runs that many.

    The write carries the target's resourceVersion, so a user's apply that lands in
    between is not overwritten: the store answers Conflict and the next tick retries.
    """
    spec = target.get("spec") or {}
    if int(spec.get("replicas", 1)) == replicas:
        return None
    meta = target.get("metadata") or {}
    out_meta = {
        k: meta[k]
        for k in ("name", "namespace", "labels", "annotations", "resourceVersion")
        if k in meta
    }
    return {
        "apiVersion": target.get("apiVersion", "apps/v1"),
        "kind": "Deployment",
        "metadata": out_meta,
        "spec": {**spec, "replicas": replicas},
    }


# --- services and destination rules ---------------------------------------------------


SIDECAR_CONTAINERS = frozenset({"istio-proxy", "envoy"})
"""Containers whose ports service.portDiscovery leaves out (a mesh proxy's, as Flagger)."""


def _service_port(canary: Canary) -> dict[str, Any]:
    svc = canary.spec.service
    port: dict[str, Any] = {
        "name": svc.port_name or "http",
        "port": svc.port,
        "targetPort": svc.target_port if svc.target_port is not None else svc.port,
        "protocol": "TCP",
    }
    if svc.app_protocol:
        port["appProtocol"] = svc.app_protocol
    return port


def discovered_ports(canary: Canary, target: dict[str, Any]) -> list[dict[str, Any]]:
    """service.portDiscovery: every container port of the target but the service's own
    (its port, or its targetPort by number or name), named as the container names it or
    ``tcp-CONTAINER-INDEX`` as Flagger does; sorted by name so the Service is the same
    on every tick."""
    svc = canary.spec.service
    target_port = svc.target_port if svc.target_port is not None else svc.port
    found: dict[str, int] = {}
    containers = (((target.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers") or []
    for container in containers:
        if container.get("name") in SIDECAR_CONTAINERS:
            continue
        for i, port in enumerate(container.get("ports") or []):
            number, name = port.get("containerPort"), port.get("name")
            if number == target_port or (name and name == target_port):
                continue
            found.setdefault(name or f"tcp-{container.get('name')}-{i}", number)
    taken = {svc.port}
    out = []
    for name, number in sorted(found.items()):
        if number not in taken:
            taken.add(number)
            out.append({"name": name, "port": number, "targetPort": number, "protocol": "TCP"})
    return out


def services(canary: Canary, target: dict[str, Any]) -> list[dict[str, Any]]:
    """NAME and NAME-primary select the primary's pods; NAME-canary the target's. Each
    carries its service.apex / primary / canary metadata and, as Flagger labels them,
    the selector key set to its own name."""
    apex, primary, canary_svc = canary.service_names
    key, value = selector_label(target)
    svc = canary.spec.service
    ports = [_service_port(canary)]
    if svc.port_discovery:
        ports += discovered_ports(canary, target)

    def one(name: str, selected: str, custom: CustomMetadata | None) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(canary, name, custom, **{key: name}),
            "spec": {"selector": {key: selected}, "ports": [dict(p) for p in ports]},
        }

    return [
        one(apex, f"{value}-primary", svc.apex),
        one(primary, f"{value}-primary", svc.primary),
        one(canary_svc, value, svc.canary),
    ]


def destination_rules(canary: Canary) -> list[dict[str, Any]]:
    """One DestinationRule per destination, each carrying service.trafficPolicy."""
    _, primary, canary_svc = canary.service_names
    out = []
    for host in (primary, canary_svc):
        spec: dict[str, Any] = {"host": host}
        if canary.spec.service.traffic_policy:
            spec["trafficPolicy"] = copy.deepcopy(canary.spec.service.traffic_policy)
        out.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": _meta(canary, host),
                "spec": spec,
            }
        )
    return out


# --- routing --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scalers:
    """What an autoscalerRef needs to be followed: the target's autoscaler (its stored
    body; None when missing) and the replicas the primary runs now (None: no primary)."""

    target_autoscaler: dict[str, Any] | None = None
    primary_replicas: int | None = None


def scaled_canary(canary: Canary, target: dict[str, Any], state: RolloutState,
                  scalers: Scalers) -> dict[str, Any] | None:
    """The target at the replicas the rollout wants, or None when it runs them. With an
    autoscalerRef a running canary's count is its autoscaler's: only the scale from and
    to zero is the rollout's."""
    if canary.spec.autoscaler_ref is None:
        return scaled_target(target, max(1, state.target_replicas) if state.canary_scaled
                             else 0)
    running = int((target.get("spec") or {}).get("replicas", 1))
    if not state.canary_scaled:
        return scaled_target(target, 0)
    if running > 0:
        return None
    return scaled_target(target, autoscaler_ref.min_replicas(scalers.target_autoscaler))


def primary_scaler(canary: Canary, scalers: Scalers) -> list[dict[str, Any]]:
    """The primary's autoscaler, when the Canary names one that exists."""
    name = autoscaler_ref.primary_autoscaler_name(canary)
    if name is None or scalers.target_autoscaler is None:
        return []
    made = autoscaler_ref.primary_autoscaler(canary, scalers.target_autoscaler,
                                             primary_name(canary), _meta(canary, name))
    return [made] if made is not None else []


@dataclass(frozen=True)
class Routing:
    """Where traffic goes at one moment of a rollout."""

    primary_weight: int = 100
    canary_weight: int = 0
    mirror: bool = False
    ab: bool = False
    sticky_cookie: str = ""
    """``NAME=VALUE`` of the running canary's session cookie, when it takes traffic."""
    primary_cookie: str = ""
    """``NAME=VALUE`` of the primary's session cookie (``primaryCookieName``)."""
    primary_cookie_max_age: int = 60
    """Flagger lets the primary's cookie live one analysis interval, so its holders are
    split again by the next weight."""
    expired_cookie: str = ""
    """The previous run's cookie, sent back with ``Max-Age=-1`` while the canary has no
    weight."""

    @property
    def canary_receives_traffic(self) -> bool:
        return self.canary_weight > 0 or self.mirror or self.ab


def routing(canary: Canary, state: RolloutState, *, canary_ready: bool = True) -> Routing:
    """The routes the state calls for, but never to a canary without ready pods.

    Session cookies as Flagger's Istio router uses them: the run's cookies while the
    canary has weight, else the previous run's cookie to expire."""
    weight = max(0, min(100, state.canary_weight))
    analysis = canary.spec.analysis
    affinity = analysis.session_affinity if analysis else None
    expired = state.previous_session_affinity_cookie if affinity else ""
    if not canary_ready:
        return Routing(expired_cookie=expired)
    sticky = state.session_affinity_cookie if affinity and weight > 0 else ""
    return Routing(
        primary_weight=100 - weight,
        canary_weight=weight,
        mirror=state.mirror_stage,
        ab=state.ab_active,
        sticky_cookie=sticky,
        primary_cookie=state.primary_session_affinity_cookie if sticky else "",
        primary_cookie_max_age=_interval_seconds(analysis),
        expired_cookie="" if sticky else expired,
    )


def _interval_seconds(analysis: CanaryAnalysis | None) -> int:
    if analysis is None or analysis.interval is None:
        return 60
    return int(parse_duration(analysis.interval))


def _merge_match(
    first: list[dict[str, Any]], second: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every condition of ``first`` ANDed with every one of ``second`` (Flagger's merge)."""
    if not second:
        return first
    if not first:
        return second
    out = []
    for a in first:
        for b in second:
            merged = {**b, **a}
            for key in ("headers", "queryParams", "withoutHeaders", "sourceLabels"):
                if key in a or key in b:
                    merged[key] = {**(b.get(key) or {}), **(a.get(key) or {})}
            out.append(merged)
    return out


def _cookie(name_value: str, affinity: SessionAffinity, max_age: int) -> str:
    """A Set-Cookie value, attributes in the order of Flagger's ``BuildCookie``."""
    parts = [name_value, f"Max-Age={max_age}"]
    if affinity.domain:
        parts.append(f"Domain={affinity.domain}")
    if affinity.http_only:
        parts.append("HttpOnly")
    if affinity.partitioned:
        parts.append("Partitioned")
    if affinity.path:
        parts.append(f"Path={affinity.path}")
    if affinity.same_site:
        parts.append(f"SameSite={affinity.same_site}")
    if affinity.secure:
        parts.append("Secure")
    return "; ".join(parts)


@dataclass(frozen=True)
class _Rules:
    """What every http rule of the VirtualService shares: the Service's route settings
    and match, and the two destinations on the Service's port."""

    primary: str
    canary: str
    port: int
    settings: dict[str, Any]
    service_match: list[dict[str, Any]]

    def dest(self, host: str, weight: int,
             headers: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"destination": {"host": host, "port": {"number": self.port}},
                               "weight": weight}
        if headers:
            out["headers"] = headers
        return out

    def rule(self, match: list[dict[str, Any]], routes: list[dict[str, Any]]) -> dict[str, Any]:
        out = dict(copy.deepcopy(self.settings))
        if match:
            out["match"] = match
        out["route"] = routes
        return out

    def split(self, match: list[dict[str, Any]], canary_weight: int) -> dict[str, Any]:
        return self.rule(match, [self.dest(self.primary, 100 - canary_weight),
                                 self.dest(self.canary, canary_weight)])


_SERVICE_ROUTE_FIELDS = (
    ("retries", "retries"),
    ("timeout", "timeout"),
    ("headers", "headers"),
    ("cors_policy", "corsPolicy"),
    ("rewrite", "rewrite"),
)
"""(Canary service field, VirtualService key) of the settings every rule carries."""


def _rules(canary: Canary) -> _Rules:
    _, primary, canary_svc = canary.service_names
    svc = canary.spec.service
    settings = {key: copy.deepcopy(getattr(svc, name))
                for name, key in _SERVICE_ROUTE_FIELDS if getattr(svc, name)}
    return _Rules(primary=primary, canary=canary_svc, port=svc.port, settings=settings,
                  service_match=[_dump(m) for m in svc.match or []])


def _ab_test_rules(rules: _Rules, analysis: CanaryAnalysis,
                   route: Routing) -> list[dict[str, Any]]:
    """Matching requests go to the canary while the test runs; the rest stay."""
    ab_match = _merge_match([_dump(m) for m in analysis.match or []], rules.service_match)
    return [rules.split(ab_match, 100 if route.ab else 0),
            rules.split(rules.service_match, 0)]


_REGEX_SPECIAL = frozenset("\\.^$|?*+()[]{}")


def _literal(text: str) -> str:
    """``text`` as an RE2 pattern matching itself."""
    return "".join(f"\\{c}" if c in _REGEX_SPECIAL else c for c in text)


def _cookie_match(name_value: str) -> list[dict[str, Any]]:
    """Requests whose Cookie header carries this cookie's name and value (Flagger's
    ``.*NAME.*VALUE.*``): the value matters, so a cookie of another run never matches."""
    name, _, value = name_value.partition("=")
    return [{"headers": {"Cookie": {"regex": f".*{_literal(name)}.*{_literal(value)}.*"}}}]


def _set_cookie(value: str) -> dict[str, Any]:
    return {"response": {"add": {"Set-Cookie": value}}}


def _expiring_rule(rules: _Rules, route: Routing) -> dict[str, Any]:
    """Holders of the previous run's cookie go where the weights say (all to the primary
    once the canary has no weight) and are told to drop it, as Flagger's router does."""
    rule = rules.rule(_merge_match(_cookie_match(route.expired_cookie), rules.service_match),
                      [rules.dest(rules.primary, route.primary_weight),
                       rules.dest(rules.canary, route.canary_weight)])
    headers = copy.deepcopy(rule.get("headers") or {})
    response = headers.setdefault("response", {})
    response["add"] = {**(response.get("add") or {}),
                       "Set-Cookie": f"{route.expired_cookie}; Max-Age=-1"}
    rule["headers"] = headers
    return rule


def _sticky_rules(rules: _Rules, analysis: CanaryAnalysis, affinity: SessionAffinity,
                  route: Routing) -> list[dict[str, Any]]:
    """While the canary takes traffic: clients holding this run's canary cookie stay on
    the canary, those holding the primary's cookie (with ``primaryCookieName``) on the
    primary; new clients are split by weight and get the cookie of the side they landed
    on. Afterwards only the previous cookie's expiry rule precedes the weighted rule."""
    weighted = _weighted_rule(rules, analysis, route)
    if not route.sticky_cookie:
        return [_expiring_rule(rules, route), weighted]
    primary_dest, canary_dest = weighted["route"]
    canary_dest["headers"] = _set_cookie(
        _cookie(route.sticky_cookie, affinity, affinity.max_age or 86400))
    out = [rules.split(_merge_match(_cookie_match(route.sticky_cookie), rules.service_match),
                       100)]
    if route.primary_cookie:
        primary_dest["headers"] = _set_cookie(
            _cookie(route.primary_cookie, affinity, route.primary_cookie_max_age))
        out.append(rules.split(
            _merge_match(_cookie_match(route.primary_cookie), rules.service_match), 0))
    return [*out, weighted]


def _weighted_rule(rules: _Rules, analysis: CanaryAnalysis | None,
                   route: Routing) -> dict[str, Any]:
    main = rules.rule(rules.service_match, [rules.dest(rules.primary, route.primary_weight),
                                            rules.dest(rules.canary, route.canary_weight)])
    if route.mirror:
        main["mirror"] = {"host": rules.canary, "port": {"number": rules.port}}
        if analysis and analysis.mirror_weight is not None:
            main["mirrorPercentage"] = {"value": float(analysis.mirror_weight)}
    return main


def _http_rules(canary: Canary, route: Routing) -> list[dict[str, Any]]:
    rules = _rules(canary)
    analysis = canary.spec.analysis
    if analysis and analysis.match and analysis.iterations:
        return _ab_test_rules(rules, analysis, route)
    if analysis and analysis.session_affinity and (route.sticky_cookie or route.expired_cookie):
        return _sticky_rules(rules, analysis, analysis.session_affinity, route)
    return [_weighted_rule(rules, analysis, route)]


def virtual_service(canary: Canary, route: Routing) -> dict[str, Any]:
    """VirtualService NAME: clients keep calling NAME; this decides who answers.

    Hosts and gateways as Flagger's Istio router sets them: ``service.hosts`` plus the
    apex name unless the apex or ``*`` is among them, and ``service.gateways`` as given
    (none means the mesh). Binding the mesh beside a listed gateway, or the apex beside
    ``*``, would make this VirtualService claim in-mesh traffic of services the Canary
    does not own. With service.delegation it has no hosts (nor gateways, which the
    Canary refuses beside delegation): a delegate, which a root VirtualService of the
    user's names in ``delegate``, as Flagger makes it."""
    apex = canary.service_names[0]
    svc = canary.spec.service
    hosts = list(svc.hosts or [])
    spec: dict[str, Any] = {}
    if not svc.delegation:
        spec["hosts"] = hosts if apex in hosts or "*" in hosts else [apex, *hosts]
    if svc.gateways:
        spec["gateways"] = list(svc.gateways)
    spec["http"] = _http_rules(canary, route)
    meta = _meta(canary, apex, svc.apex)
    if canary.retry_on_primary:  # the intent is stored where the routes are read from
        meta["annotations"][RETRY_ON_PRIMARY_ANNOTATION] = "true"
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta,
        "spec": spec,
    }


# --- the whole set --------------------------------------------------------------------


def desired_objects(
    canary: Canary,
    target: dict[str, Any],
    state: RolloutState,
    *,
    canary_ready: bool = True,
    primary_ready: bool = True,
    scalers: Scalers = Scalers(),
) -> list[dict[str, Any]]:
    """Everything the Canary owns, for the current state, in a safe write order.

    Until the primary has ready pods (initialization) only the primary Deployment is
    made, so the apex host never routes to a workload that does not exist yet.
    """
    objects = [primary_deployment(canary, target, state, scalers.primary_replicas),
               *primary_scaler(canary, scalers)]
    initialized = state.phase not in ("", "Initializing")
    if not initialized and not primary_ready:
        return objects
    objects += services(canary, target)
    objects += destination_rules(canary)
    objects.append(virtual_service(canary, routing(canary, state, canary_ready=canary_ready)))
    scaled = scaled_canary(canary, target, state, scalers)
    if scaled is not None:
        objects.append(scaled)
    return objects


def owned_names(canary: Canary, state: RolloutState | None = None) -> list[tuple[str, str]]:
    """(kind, name) of every generated object, for cleanup when the Canary goes away."""
    apex, primary, canary_svc = canary.service_names
    copies = [(kind, name + configs.PRIMARY_SUFFIX) for kind, _, name in
              (c.partition("/") for c in (state.primary_configs if state else []))]
    scaler = autoscaler_ref.primary_autoscaler_name(canary)
    return [*copies,
        *([(autoscaler_ref.KIND, scaler)] if scaler else []),
        ("VirtualService", apex),
        ("DestinationRule", primary),
        ("DestinationRule", canary_svc),
        ("Service", primary),
        ("Service", canary_svc),
        ("Service", apex),
        ("Deployment", primary_name(canary)),
    ]


def reverted_target(target: dict[str, Any], state: RolloutState) -> dict[str, Any] | None:
    """The target scaled back up, for revertOnDeletion (Flagger restores it)."""
    return scaled_target(target, max(1, state.target_replicas))
