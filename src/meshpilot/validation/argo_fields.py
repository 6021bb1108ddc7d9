"""Fields of Argo Rollouts' Rollout that meshpilot does not act on: refused (MP0057).

A Rollout is a promise about how a release is routed and judged. meshpilot runs the
canary strategy with Istio traffic routing (setWeight and pause steps, host-level or
subset-level splitting); a field that would change a release and is not acted on is
refused by name, never stored and ignored. When a field becomes implemented its row
goes, and docs/diagnostics.md and the README's Argo section with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshpilot.api.argo import FAIL_FAST_MIN_SUCCESS_ANNOTATION
from meshpilot.validation import codes
from meshpilot.validation.finding import Finding
from meshpilot.validation.placement_rules import placement_findings
from meshpilot.validation.shapes import as_mapping
from meshpilot.validation.unapplied_fields import EACH, Unapplied, findings_of, row

_REFUSED = codes.NOT_IMPLEMENTED_ARGO_FIELD
_SPEC = ("spec",)
_CANARY = ("spec", "strategy", "canary")
_ROUTING = (*_CANARY, "trafficRouting")
_ISTIO = (*_ROUTING, "istio")


def _refuse(*pattern: str, what: str) -> Unapplied:
    return row(*pattern, code=_REFUSED,
               why=f"{{field}} is refused: meshpilot does not implement {what}; "
                   "remove it (see the README's Argo Rollouts section for what runs)")


ROLLOUT: tuple[Unapplied, ...] = (
    _refuse(*_SPEC, "minReadySeconds", what="minReadySeconds (a pod counts when ready)"),
    _refuse(*_SPEC, "progressDeadlineSeconds", what="a progress deadline"),
    _refuse(*_SPEC, "progressDeadlineAbort", what="a progress deadline"),
    _refuse(*_SPEC, "rollbackWindow", what="rollbackWindow"),
    _refuse(*_SPEC, "selector", "matchExpressions",
            what="matchExpressions (give matchLabels)"),
    *(_refuse("spec", "strategy", "blueGreen", field, what=f"blueGreen.{field}") for field in (
        "previewReplicaCount", "antiAffinity", "activeMetadata", "previewMetadata",
        "scaleDownDelayRevisionLimit", "abortScaleDownDelaySeconds", "maxUnavailable")),
    *(_refuse("spec", "strategy", "blueGreen", place, field, what=f"analysis {field}")
      for place in ("prePromotionAnalysis", "postPromotionAnalysis")
      for field in ("analysisRunMetadata",)),
    *(_refuse("spec", "strategy", "blueGreen", place, "args", EACH, "valueFrom", "fieldRef",
              what="an analysis argument from valueFrom.fieldRef (give value or "
                   "valueFrom.podTemplateHashValue)")
      for place in ("prePromotionAnalysis", "postPromotionAnalysis")),
    # Argo itself does not act on these with traffic routing (the canary's pods follow
    # setWeight / setCanaryScale, the stable ones stay), and a canary here always has it
    *(row(*_CANARY, field, why="{field} is accepted and not acted on: with "
          "trafficRouting, Argo Rollouts sizes the canary by setWeight or setCanaryScale and "
          "keeps the stable pods, and so does meshpilot") for field in (
        "maxSurge", "maxUnavailable")),
    *(_refuse(*_CANARY, field, what=f"canary.{field}") for field in (
        "antiAffinity", "canaryMetadata",
        "stableMetadata", "scaleDownDelaySeconds", "scaleDownDelayRevisionLimit",
        "dynamicStableScale", "pingPong",
        "minPodsPerReplicaSet", "replicaProgressThreshold")),
    *(_refuse(*_CANARY, "steps", EACH, step, what=f"the {step} step (setWeight, pause, "
              "setCanaryScale, analysis, setHeaderRoute and setMirrorRoute run)")
      for step in ("experiment", "plugin")),
    *(_refuse(*_ROUTING, router, what=f"trafficRouting.{router}: meshpilot routes as "
              "Istio only (trafficRouting.istio)") for router in (
        "nginx", "alb", "smi", "ambassador", "appMesh", "traefik", "apisix", "plugins")),
    *(_refuse(*place, field, what=f"analysis {field}") for place in (
        (*_CANARY, "analysis"), (*_CANARY, "steps", EACH, "analysis"))
      for field in ("analysisRunMetadata",)),
    *(_refuse(*place, "args", EACH, "valueFrom", "fieldRef", what="an analysis argument "
              "from valueFrom.fieldRef (give value or valueFrom.podTemplateHashValue)")
      for place in ((*_CANARY, "analysis"), (*_CANARY, "steps", EACH, "analysis"))),
    _refuse(*_ROUTING, "maxTrafficWeight", what="maxTrafficWeight (weights are percent)"),
    *(_refuse(*_ISTIO, place, *rest, field, what=f"Istio {field} (HTTP routes are "
              "split)") for place, rest in (("virtualService", ()),
                                            ("virtualServices", (EACH,)))
      for field in ("tlsRoutes", "tcpRoutes")),
)


def _no_routing(body: Mapping[str, Any]) -> list[Finding]:
    """A canary without trafficRouting.istio is Argo's replica-ratio canary: not run."""
    canary = ((body.get("spec") or {}).get("strategy") or {}).get("canary")
    if not isinstance(canary, Mapping):
        if ((body.get("spec") or {}).get("strategy") or {}).get("blueGreen") is None:
            return [Finding(_REFUSED, ("spec", "strategy"),
                            "strategy is refused: meshpilot runs strategy.canary with "
                            "trafficRouting.istio; give canary")]
        return []
    if ((canary.get("trafficRouting") or {}).get("istio")) is None:
        return [Finding(_REFUSED, (*_CANARY, "trafficRouting"),
                        "a canary without trafficRouting.istio is refused: meshpilot does "
                        "not implement Argo's replica-count canary yet; give "
                        "trafficRouting.istio with a virtualService (and destinationRule "
                        "for subset-level splitting)")]
    return []


def _other_namespace(body: Mapping[str, Any]) -> list[Finding]:
    """Argo reads ``name.namespace`` as a VirtualService in another namespace: not run."""
    istio = (((((body.get("spec") or {}).get("strategy") or {}).get("canary") or {})
              .get("trafficRouting") or {}).get("istio") or {})
    places: list[tuple[tuple[str | int, ...], Any]] = []
    if isinstance(istio.get("virtualService"), Mapping):
        places.append(((*_ISTIO, "virtualService", "name"), istio["virtualService"]))
    for i, vs in enumerate(istio.get("virtualServices") or []):
        if isinstance(vs, Mapping):
            places.append(((*_ISTIO, "virtualServices", i, "name"), vs))
    return [Finding(_REFUSED, path, f"name {vs.get('name')!r} is refused: a VirtualService "
                    "in another namespace (name.namespace) is not implemented; put it in "
                    "the Rollout's namespace")
            for path, vs in places if "." in str(vs.get("name", ""))]


def _paused_blue_green(body: Mapping[str, Any]) -> list[Finding]:
    """spec.paused holds a canary's steps; a blue-green Rollout's is not run."""
    spec = body.get("spec") or {}
    if spec.get("paused") and (spec.get("strategy") or {}).get("blueGreen") is not None:
        return [Finding(_REFUSED, ("spec", "paused"),
                        "paused is refused on a blue-green Rollout: meshpilot implements "
                        "spec.paused for the canary strategy; remove it (autoPromotionEnabled"
                        ": false holds a blue-green Rollout until promote)")]
    return []


def _fail_fast(body: Mapping[str, Any]) -> list[Finding]:
    """meshpilot's opt-in fail-fast for a canary: a percentage, on a canary Rollout."""
    key = FAIL_FAST_MIN_SUCCESS_ANNOTATION
    raw = ((body.get("metadata") or {}).get("annotations") or {}).get(key)
    if raw is None:
        return []
    path = ("metadata", "annotations", key)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value <= 100:  # NaN too
        return [Finding(codes.ARGO_FAIL_FAST_VALUE, path,
                        f"{key} is {raw!r}: give the success rate (%) the canary is held "
                        "to between analysis measurements, above 0 and at most 100 (e.g. "
                        "\"99\"), or remove it to judge only at measurements as Argo does")]
    if ((body.get("spec") or {}).get("strategy") or {}).get("blueGreen") is not None:
        return [Finding(codes.ARGO_FAIL_FAST_BLUE_GREEN, path,
                        f"{key} is accepted and not acted on: a blue-green Rollout has no "
                        "canary share of traffic to judge between measurements")]
    return []


def rollout_findings(body: Mapping[str, Any]) -> list[Finding]:
    return [*findings_of(ROLLOUT, body), *_no_routing(body), *_other_namespace(body),
            *_paused_blue_green(body), *_placement(body),
            *_fail_fast(body)]


def _placement(body: Mapping[str, Any]) -> list[Finding]:
    """The template's node (its revisions' pods run there) as a Deployment's is judged."""
    template = as_mapping(as_mapping(body.get("spec")).get("template"))
    return placement_findings(as_mapping(template.get("spec")), ("spec", "template", "spec"))
