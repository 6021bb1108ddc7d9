"""Fields of Flagger's Canary and MetricTemplate that meshpilot does not act on: refused.

Flagger's schema carries fields for every router and metrics backend it supports;
meshpilot is one router (its own mesh) and queries Prometheus, Graphite, InfluxDB and its
own telemetry. A Canary is a promise about how a release will be judged and routed, so a
field that would change that and is not acted on is refused (MP0048) rather than
applied without it: a Canary must never look as if it autoscaled or routed in a way it
does not. Fields whose only effect is on Kubernetes objects meshpilot has no use
for (a headless Service, a traffic distribution hint) are warnings (MP2016).

The rows read the body in wire form, as the model writes it back (see
:mod:`~meshpilot.validation.unapplied_fields`). When a field becomes implemented its
row goes, and docs/diagnostics.md with it.
"""

from __future__ import annotations

from typing import Any

from meshpilot.validation import codes
from meshpilot.validation.unapplied_fields import Unapplied, row

_REFUSED = codes.NOT_IMPLEMENTED_FLAGGER_FIELD
ROUTER = "istio"
"""The one Flagger provider (router) meshpilot is: its own mesh, programmed as Istio."""
QUERIED_PROVIDERS = frozenset({"prometheus", "graphite", "influxdb"})
"""MetricTemplate provider types meshpilot queries."""


def _other_router(_: str | int, value: Any) -> bool:
    return value is not None and str(value).split(":", 1)[0] != ROUTER


def _not_hpa(_: str | int, value: Any) -> bool:
    return value != "HorizontalPodAutoscaler"


def _not_queried(_: str | int, value: Any) -> bool:
    return value not in QUERIED_PROVIDERS


def _other_router_field(field: str, used_by: str) -> Unapplied:
    return row("spec", field, code=_REFUSED,
               why=f"{{field}} is refused: it configures {used_by}, a router meshpilot is not "
                   "(meshpilot routes with its own Istio-compatible mesh); remove it")


_SERVICE = ("spec", "service")

CANARY: tuple[Unapplied, ...] = (
    row("spec", "provider", when=_other_router, code=_REFUSED,
        why="provider {value} is refused: meshpilot is an Istio-compatible mesh and routes "
            "the Canary that way only; remove provider or set it to istio"),
    row("spec", "autoscalerRef", "kind", when=_not_hpa, code=codes.AUTOSCALER_REF_KIND,
        why="autoscalerRef kind {value} is refused: meshpilot runs HorizontalPodAutoscalers "
            "(autoscaling/v2) only, not KEDA ScaledObjects; point it at a "
            "HorizontalPodAutoscaler"),
    row("spec", "autoscalerRef", "primaryScalerQueries", code=codes.HPA_FIELD_NOT_APPLIED,
        why="autoscalerRef.primaryScalerQueries is not applied: it rewrites a KEDA "
            "ScaledObject's triggers, and the primary's HorizontalPodAutoscaler copies the "
            "target's metrics as Flagger copies them; remove it"),
    _other_router_field("ingressRef", "an ingress controller's Ingress (NGINX, Skipper)"),
    _other_router_field("routeRef", "a Gateway API or Kuma route"),
    _other_router_field("upstreamRef", "a Gloo or Kong upstream"),
    *(row(*_SERVICE, field, code=_REFUSED,
          why=f"service.{{field}} is refused: it configures {used_by}, which meshpilot does "
              "not route with; remove it")
      for field, used_by in (("gatewayRefs", "the Gateway API router"),
                             ("backendTimeout", "the Gateway API router"),
                             ("mirror", "the Gateway API router's mirror filter (use "
                                        "analysis.mirror for Istio mirroring)"),
                             ("meshName", "App Mesh"),
                             ("backends", "App Mesh"))),
    row(*_SERVICE, "unmanagedMetadata", code=_REFUSED,
        why="service.unmanagedMetadata is refused: meshpilot writes the generated Services "
            "whole, so labels and annotations others set on them would not be kept; "
            "remove it and put the metadata in service.apex, service.primary or "
            "service.canary"),
    row(*_SERVICE, "headless",
        why="service.headless is not applied: meshpilot's Services have no cluster IP to "
            "leave out; calls reach the pods by name through their sidecar either way"),
    row(*_SERVICE, "trafficDistribution",
        why="service.trafficDistribution is not applied: meshpilot's endpoints have no "
            "zone, so traffic is balanced over every endpoint"),
)

_PROVIDER = ("spec", "provider")

METRIC_TEMPLATE: tuple[Unapplied, ...] = (
    row(*_PROVIDER, "type", when=_not_queried, code=_REFUSED,
        why="provider type {value} is refused: meshpilot queries prometheus, graphite "
            "and influxdb (InfluxQL) only (and its built-in request-success-rate and "
            "request-duration checks, which need no template); point a template of one "
            "of those types at a server that has the data"),
    row(*_PROVIDER, "region",
        why="region is not applied: it locates a CloudWatch provider; prometheus, "
            "graphite and influxdb providers are found by their address; remove it"),
)
