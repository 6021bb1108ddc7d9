"""The ``meshpilot.io/retry-on-primary`` annotation, judged at apply.

It is meshpilot's own knob (Flagger's schema has none), so a value it cannot read is
refused rather than taken as "off": a user who asked for retries and misspelt ``true``
would otherwise learn it from failed requests. On a Canary whose strategy gives the
canary no weighted share of user requests (blue-green and A/B testing send it all the
requests they route to it; mirroring sends it copies) there is no primary to retry on:
the annotation is accepted and said to do nothing, as the generated routes ignore it.

- MP0084 (error): a value other than ``"true"`` or ``"false"`` (Canary, VirtualService).
- MP2037 (warning): ``"true"`` on a blue-green, A/B or mirroring Canary, or one whose
  VirtualService is a delegate (``service.delegation``) or bound to gateways only.
- MP2038 (warning): the annotation on an Argo Rollout, which does not read it (its
  VirtualService is the user's; the annotation goes there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshpilot.api.flagger import RETRY_ON_PRIMARY_ANNOTATION
from meshpilot.validation import codes
from meshpilot.validation.finding import Finding
from meshpilot.validation.shapes import as_mapping

_PATH = ("metadata", "annotations", RETRY_ON_PRIMARY_ANNOTATION)


def _value(body: Mapping[str, Any]) -> Any:
    return as_mapping(as_mapping(body.get("metadata")).get("annotations")).get(
        RETRY_ON_PRIMARY_ANNOTATION)


def _bad_value(raw: Any) -> list[Finding]:
    if raw is None or raw in ("true", "false"):
        return []
    return [Finding(codes.RETRY_ON_PRIMARY_VALUE, _PATH,
                    f"{RETRY_ON_PRIMARY_ANNOTATION} is {raw!r}: give \"true\" (retry a "
                    "GET, HEAD or OPTIONS request the canary failed once on the primary) "
                    "or \"false\" (the default), or remove it")]


def _strategy(body: Mapping[str, Any]) -> str:
    """The Canary's strategy, in the order Flagger's scheduler dispatches."""
    analysis = as_mapping(as_mapping(body.get("spec")).get("analysis"))
    if analysis.get("iterations"):
        return "A/B testing" if analysis.get("match") else "blue-green"
    return "mirroring" if analysis.get("mirror") else "canary"


def _not_acted_on(body: Mapping[str, Any]) -> str:
    """Why the annotation would do nothing for this Canary ("" when it acts)."""
    strategy = _strategy(body)
    if strategy != "canary":
        return (f"this Canary runs {strategy}, where the canary answers every user request "
                "routed to it (or only mirrored copies), so there is no primary share to "
                "retry on; it applies to progressive traffic shifting (stepWeight or "
                "stepWeights without iterations)")
    service = as_mapping(as_mapping(body.get("spec")).get("service"))
    if service.get("delegation"):
        return ("service.delegation makes the generated VirtualService a delegate, whose "
                "routes are merged into your root VirtualService; retry on the primary is "
                "applied to a VirtualService's own routes only")
    gateways = service.get("gateways")
    if isinstance(gateways, list) and gateways and "mesh" not in gateways:
        return ("service.gateways binds the generated VirtualService to gateways only, and "
                "gateways route as written; add \"mesh\" to service.gateways for the "
                "sidecars' and the mesh proxy's requests to be retried")
    return ""


def canary_retry_findings(body: Mapping[str, Any]) -> list[Finding]:
    raw = _value(body)
    bad = _bad_value(raw)
    if bad or raw != "true":
        return bad
    reason = _not_acted_on(body)
    if not reason:
        return []
    return [Finding(codes.RETRY_ON_PRIMARY_UNUSED, _PATH,
                    f"{RETRY_ON_PRIMARY_ANNOTATION} is accepted and not acted on: {reason}")]


def virtual_service_retry_findings(body: Mapping[str, Any]) -> list[Finding]:
    return _bad_value(_value(body))


def rollout_retry_findings(body: Mapping[str, Any]) -> list[Finding]:
    """An Argo Rollout's routes are the user's own VirtualService, which the Rollout
    only re-weights: the annotation belongs there, with the stable destination first
    (the one a failed request is retried on)."""
    if _value(body) is None:
        return []
    return [Finding(codes.RETRY_ON_PRIMARY_ROLLOUT, _PATH,
                    f"{RETRY_ON_PRIMARY_ANNOTATION} is not acted on on a Rollout: put it on "
                    "the VirtualService its trafficRouting.istio names, with the stable "
                    "destination listed first in each weighted route (a request the canary "
                    "fails is retried on the first destination)")]
