"""The edits Argo Rollouts makes to the user's Istio objects, and nothing more.

Following ``rollout/trafficrouting/istio/istio.go``:

- **VirtualService** (``SetWeight``): in each HTTP route named in ``routes`` (or the only
  HTTP route when ``routes`` is empty; with several, that is an error), the destination
  that is the canary gets the canary weight and the stable one the rest. Subset-level
  (a ``destinationRule`` given): destinations are told apart by ``subset``
  (``canarySubsetName`` / ``stableSubsetName``); host-level: by ``host``, the
  ``canaryService`` / ``stableService`` name or a name under it (``svc.ns.svc...``). A
  named route without both destinations is an error, as in Argo's
  ``ValidateHTTPRoutes``. Every other route, field and destination is left as written.
- **DestinationRule** (``UpdateHash``): the canary and stable subsets get the label
  ``rollouts-pod-template-hash`` set to their revision's hash, and the rule the
  annotation ``argo-rollouts.argoproj.io/managed-by-rollouts: ROLLOUT``. (Argo also
  drops the rule's other subsets; meshpilot leaves them, so nothing else of the user's
  object changes.)
- **Services** (``rollout/service.go``): the ``canaryService`` and ``stableService``,
  when given, select their revision's pods: ``rollouts-pod-template-hash`` is added to
  their selector, so host-level splitting sends the canary's share to the canary's pods.
"""

from __future__ import annotations

import copy
from typing import Any

from meshpilot.api.argo import (
    MANAGED_BY_ROLLOUTS,
    POD_TEMPLATE_HASH_LABEL,
    IstioVirtualService,
    Rollout,
)


class RoutingError(Exception):
    """The user's objects cannot carry the split as the Rollout describes it."""


def _writable(body: dict[str, Any]) -> dict[str, Any]:
    """A stored object as it is written back: the user's body, with its resourceVersion
    (a user's apply in between makes the write a conflict, retried next tick)."""
    out = copy.deepcopy(body)
    out.pop("status", None)
    return out


def _route_indexes(http: list[Any], names: list[str] | None, vs_name: str) -> list[int]:
    if not names:
        if len(http) != 1:
            raise RoutingError(
                f"VirtualService {vs_name} has {len(http)} HTTP routes; name the ones to "
                "split in trafficRouting.istio.virtualService.routes (Argo splits the only "
                "route when routes is empty)")
        return [0]
    by_name = {r.get("name"): i for i, r in enumerate(http) if isinstance(r, dict)}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise RoutingError(f"VirtualService {vs_name} has no HTTP route named "
                           f"{', '.join(missing)}")
    return [by_name[n] for n in names]


def _host_is(host: str, service: str | None) -> bool:
    return bool(service) and (host == service or host.startswith(f"{service}."))


def _side(rollout: Rollout, destination: dict[str, Any]) -> str | None:
    """"canary", "stable" or None for a route destination."""
    rule = rollout.istio.destination_rule if rollout.istio else None
    if rule is not None:
        subset = destination.get("subset")
        return ("canary" if subset == rule.canary_subset_name else
                "stable" if subset == rule.stable_subset_name else None)
    host = str(destination.get("host") or "")
    canary = rollout.canary
    return ("canary" if _host_is(host, canary.canary_service) else
            "stable" if _host_is(host, canary.stable_service) else None)


def weighted_virtual_service(rollout: Rollout, spec: IstioVirtualService,
                             body: dict[str, Any], canary_weight: int) -> dict[str, Any]:
    """The user's VirtualService with the named routes split ``canary_weight`` percent to
    the canary; raises RoutingError when it cannot be."""
    out = _writable(body)
    http = (out.get("spec") or {}).get("http") or []
    for i in _route_indexes(http, spec.routes, spec.name):
        destinations = http[i].get("route") or []
        sides = [_side(rollout, d.get("destination") or {}) for d in destinations]
        if "canary" not in sides or "stable" not in sides:
            raise RoutingError(
                f"VirtualService {spec.name} route {http[i].get('name') or i} needs a "
                "canary and a stable destination (Argo's rule); it has "
                f"{len(destinations)} destination(s) and {sides.count('canary')} canary, "
                f"{sides.count('stable')} stable")
        for destination, side in zip(destinations, sides, strict=True):
            if side == "canary":
                destination["weight"] = canary_weight
            elif side == "stable":
                destination["weight"] = 100 - canary_weight
    return out


def hashed_destination_rule(rollout: Rollout, body: dict[str, Any], canary_hash: str,
                            stable_hash: str) -> dict[str, Any]:
    """The user's DestinationRule with its canary and stable subsets selecting those
    revisions' pods; raises RoutingError when a subset is missing."""
    rule = rollout.istio.destination_rule if rollout.istio else None
    if rule is None:
        raise RoutingError("no destinationRule in trafficRouting.istio")
    out = _writable(body)
    meta = out.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}),
                           MANAGED_BY_ROLLOUTS: rollout.metadata.name}
    wanted = {rule.canary_subset_name: canary_hash, rule.stable_subset_name: stable_hash}
    seen = set()
    for subset in (out.get("spec") or {}).get("subsets") or []:
        pod_hash = wanted.get(subset.get("name"))
        if pod_hash is not None:
            subset["labels"] = {**(subset.get("labels") or {}),
                                POD_TEMPLATE_HASH_LABEL: pod_hash}
            seen.add(subset.get("name"))
    missing = sorted(set(wanted) - seen)
    if missing:
        raise RoutingError(f"DestinationRule {rule.name} has no subset named "
                           f"{', '.join(missing)}")
    return out


def hashed_service(body: dict[str, Any], pod_hash: str) -> dict[str, Any]:
    """The user's Service selecting only revision ``pod_hash``'s pods."""
    out = _writable(body)
    spec = out.setdefault("spec", {})
    spec["selector"] = {**(spec.get("selector") or {}), POD_TEMPLATE_HASH_LABEL: pod_hash}
    return out


def changed(written: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Whether writing ``written`` over ``stored`` changes anything the user sees."""
    def view(body: dict[str, Any]) -> Any:
        return (body.get("spec"), (body.get("metadata") or {}).get("annotations"),
                (body.get("metadata") or {}).get("labels"))
    return view(written) != view(stored)
