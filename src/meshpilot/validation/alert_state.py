"""Alerts across objects: what a Canary's alert and an AlertProvider name must exist.

A Canary alert's ``providerRef`` is looked up in ``providerRef.namespace`` (the Canary's
own when unset), and an AlertProvider's ``secretRef`` in the provider's namespace, as
Flagger looks them up when it sends. A missing one is a warning (MP2025), not an error,
as for a MetricTemplate's Secret: the object is applied, and the alerts that need the
missing object are not sent (the control plane's log says why) until it is applied;
applied in one file with it, no warning is given.
"""

from __future__ import annotations

from collections.abc import Callable

from meshpilot.validation import codes
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.state_object import Findings, StateObject

Report = Callable[[StateObject], bool]


def check_alert_refs(objects: list[StateObject], report: Report, found: Findings) -> None:
    canaries = [o for o in objects if o.key.kind == "Canary" and report(o)]
    providers = [o for o in objects if o.key.kind == "AlertProvider" and report(o)]
    if canaries:
        _check_provider_refs(canaries, objects, found)
    if providers:
        _check_provider_secrets(providers, objects, found)


def _check_provider_refs(canaries: list[StateObject], objects: list[StateObject],
                         found: Findings) -> None:
    known = {(o.namespace, o.key.name) for o in objects if o.key.kind == "AlertProvider"}
    for canary in canaries:
        alerts = as_list(as_mapping(canary.spec.get("analysis")).get("alerts"))
        for i, alert in enumerate(alerts):
            ref = as_mapping(as_mapping(alert).get("providerRef"))
            name = ref.get("name")
            if not isinstance(name, str):
                continue
            namespace = ref.get("namespace") or canary.namespace
            if (namespace, name) not in known:
                found.add(codes.ALERT_PROVIDER_MISSING, canary,
                          ("spec", "analysis", "alerts", i, "providerRef", "name"),
                          f"no AlertProvider {namespace}/{name}: the alert "
                          f"{as_mapping(alert).get('name')!r} is not sent until it is "
                          "applied")


def _check_provider_secrets(providers: list[StateObject], objects: list[StateObject],
                            found: Findings) -> None:
    secrets = {(o.namespace, o.key.name) for o in objects
               if not o.key.group and o.key.kind == "Secret"}
    for provider in providers:
        name = as_mapping(provider.spec.get("secretRef")).get("name")
        if isinstance(name, str) and (provider.namespace, name) not in secrets:
            found.add(codes.ALERT_PROVIDER_MISSING, provider, ("spec", "secretRef", "name"),
                      f"no Secret {provider.namespace}/{name}: alerts through this provider "
                      "are not sent until it is applied (keys: address, and optionally "
                      "token)")
