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
from typing import Any

from meshpilot.api.flagger import Canary, SessionAffinity
from meshpilot.delivery.state import RolloutState

MANAGED_BY = {"app.kubernetes.io/managed-by": "meshpilot-delivery"}
CANARY_ANNOTATION = "meshpilot.io/canary"
SELECTOR_KEYS = ("app", "name", "app.kubernetes.io/name")
"""Label keys Flagger looks for in the target's selector, in order."""


def _dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)


def _meta(canary: Canary, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": canary.metadata.namespace,
        "labels": dict(MANAGED_BY),
        "annotations": {CANARY_ANNOTATION: canary.metadata.name},
    }


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
    canary: Canary, target: dict[str, Any], state: RolloutState
) -> dict[str, Any]:
    """NAME-primary: the promoted template, relabelled so its pods are told apart."""
    key, value = selector_label(target)
    spec = copy.deepcopy(target.get("spec") or {})
    template = copy.deepcopy(state.primary_template or spec.get("template") or {})
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), key: f"{value}-primary"}
    selector = spec.get("selector") or {}
    match = dict(selector.get("matchLabels") or {})
    match[key] = f"{value}-primary"
    spec["selector"] = {**selector, "matchLabels": match}
    spec["template"] = template
    spec["replicas"] = max(1, state.target_replicas)
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


def services(canary: Canary, target: dict[str, Any]) -> list[dict[str, Any]]:
    """NAME and NAME-primary select the primary's pods; NAME-canary the target's."""
    apex, primary, canary_svc = canary.service_names
    key, value = selector_label(target)
    svc = canary.spec.service
    port: dict[str, Any] = {
        "name": svc.port_name or "http",
        "port": svc.port,
        "targetPort": svc.target_port if svc.target_port is not None else svc.port,
        "protocol": "TCP",
    }
    if svc.app_protocol:
        port["appProtocol"] = svc.app_protocol

    def one(name: str, selected: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(canary, name),
            "spec": {"selector": {key: selected}, "ports": [dict(port)]},
        }

    return [
        one(apex, f"{value}-primary"),
        one(primary, f"{value}-primary"),
        one(canary_svc, value),
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
class Routing:
    """Where traffic goes at one moment of a rollout."""

    primary_weight: int = 100
    canary_weight: int = 0
    mirror: bool = False
    ab: bool = False
    sticky_cookie: str = ""

    @property
    def canary_receives_traffic(self) -> bool:
        return self.canary_weight > 0 or self.mirror or self.ab


def routing(canary: Canary, state: RolloutState, *, canary_ready: bool = True) -> Routing:
    """The routes the state calls for, but never to a canary without ready pods."""
    weight = max(0, min(100, state.canary_weight))
    if not canary_ready:
        return Routing()
    affinity = canary.spec.analysis.session_affinity if canary.spec.analysis else None
    sticky = state.session_affinity_cookie if affinity and 0 < weight < 100 else ""
    return Routing(
        primary_weight=100 - weight,
        canary_weight=weight,
        mirror=state.mirror_stage,
        ab=state.ab_active,
        sticky_cookie=sticky,
    )


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


def _cookie(name_value: str, affinity: SessionAffinity) -> str:
    parts = [name_value, f"Max-Age={affinity.max_age or 86400}"]
    if affinity.path:
        parts.append(f"Path={affinity.path}")
    if affinity.domain:
        parts.append(f"Domain={affinity.domain}")
    if affinity.http_only:
        parts.append("HttpOnly")
    if affinity.secure:
        parts.append("Secure")
    if affinity.same_site:
        parts.append(f"SameSite={affinity.same_site}")
    if affinity.partitioned:
        parts.append("Partitioned")
    return "; ".join(parts)


def virtual_service(canary: Canary, route: Routing) -> dict[str, Any]:
    """VirtualService NAME: clients keep calling NAME; this decides who answers."""
    apex, primary, canary_svc = canary.service_names
    svc = canary.spec.service
    port = {"number": svc.port}
    base: dict[str, Any] = {}
    for field_name, key in (
        ("retries", "retries"),
        ("timeout", "timeout"),
        ("headers", "headers"),
        ("cors_policy", "corsPolicy"),
        ("rewrite", "rewrite"),
    ):
        value = getattr(svc, field_name)
        if value:
            base[key] = copy.deepcopy(value)
    service_match = [_dump(m) for m in svc.match or []]

    def dest(host: str, weight: int, headers: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"destination": {"host": host, "port": dict(port)}, "weight": weight}
        if headers:
            out["headers"] = headers
        return out

    def rule(match: list[dict[str, Any]], routes: list[dict[str, Any]]) -> dict[str, Any]:
        out = dict(copy.deepcopy(base))
        if match:
            out["match"] = match
        out["route"] = routes
        return out

    http: list[dict[str, Any]] = []
    analysis = canary.spec.analysis
    if analysis and analysis.match and analysis.iterations:
        # A/B: matching requests go to the canary while the test runs; the rest stay.
        ab_match = _merge_match([_dump(m) for m in analysis.match], service_match)
        canary_w = 100 if route.ab else 0
        http.append(rule(ab_match, [dest(primary, 100 - canary_w), dest(canary_svc, canary_w)]))
        http.append(rule(service_match, [dest(primary, 100), dest(canary_svc, 0)]))
    elif route.sticky_cookie and analysis and analysis.session_affinity:
        affinity = analysis.session_affinity
        cookie_name = route.sticky_cookie.split("=", 1)[0]
        sticky_match = [{"headers": {"Cookie": {"regex": f".*{cookie_name}=.*"}}}]
        http.append(
            rule(
                _merge_match(sticky_match, service_match),
                [dest(primary, 0), dest(canary_svc, 100)],
            )
        )
        primary_headers = None
        if affinity.primary_cookie_name:
            primary_cookie = f"{affinity.primary_cookie_name}=primary"
            primary_match = [
                {"headers": {"Cookie": {"regex": f".*{affinity.primary_cookie_name}=.*"}}}
            ]
            http.append(
                rule(
                    _merge_match(primary_match, service_match),
                    [dest(primary, 100), dest(canary_svc, 0)],
                )
            )
            primary_headers = {
                "response": {"add": {"Set-Cookie": _cookie(primary_cookie, affinity)}}
            }
        canary_headers = {
            "response": {"add": {"Set-Cookie": _cookie(route.sticky_cookie, affinity)}}
        }
        http.append(
            rule(
                service_match,
                [
                    dest(primary, route.primary_weight, primary_headers),
                    dest(canary_svc, route.canary_weight, canary_headers),
                ],
            )
        )
    else:
        main = rule(
            service_match,
            [dest(primary, route.primary_weight), dest(canary_svc, route.canary_weight)],
        )
        if route.mirror:
            main["mirror"] = {"host": canary_svc, "port": dict(port)}
            if analysis and analysis.mirror_weight is not None:
                main["mirrorPercentage"] = {"value": float(analysis.mirror_weight)}
        http.append(main)

    hosts = [apex, *[h for h in svc.hosts or [] if h != apex]]
    spec: dict[str, Any] = {"hosts": hosts}
    if svc.gateways:
        gateways = list(svc.gateways)
        if "mesh" not in gateways:
            gateways.append("mesh")  # as Flagger: the apex host stays routable in the mesh
        spec["gateways"] = gateways
    spec["http"] = http
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": _meta(canary, apex),
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
) -> list[dict[str, Any]]:
    """Everything the Canary owns, for the current state, in a safe write order.

    Until the primary has ready pods (initialization) only the primary Deployment is
    made, so the apex host never routes to a workload that does not exist yet.
    """
    objects = [primary_deployment(canary, target, state)]
    initialized = state.phase not in ("", "Initializing")
    if not initialized and not primary_ready:
        return objects
    objects += services(canary, target)
    objects += destination_rules(canary)
    objects.append(virtual_service(canary, routing(canary, state, canary_ready=canary_ready)))
    replicas = max(1, state.target_replicas) if state.canary_scaled else 0
    scaled = scaled_target(target, replicas)
    if scaled is not None:
        objects.append(scaled)
    return objects


def owned_names(canary: Canary) -> list[tuple[str, str]]:
    """(kind, name) of every generated object, for cleanup when the Canary goes away."""
    apex, primary, canary_svc = canary.service_names
    return [
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
