"""ServiceEntry checks beyond its model: a wildcard host that DNS resolution could not
resolve (MP0092; Istio refuses it the same way: with no endpoints, DNS resolves the hosts
themselves, which must then be names, not patterns), and a mesh VirtualService for a
name only a wildcard entry covers (MP2061: the covered names are routed by the
pattern's routes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from meshpilot.api.hosts import fqdn, host_matches, service_fqdn
from meshpilot.validation import codes
from meshpilot.validation.finding import Finding
from meshpilot.validation.locality_rules import entry_findings
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.state_object import Findings, StateObject


def service_entry_findings(body: Mapping[str, Any]) -> list[Finding]:
    spec = as_mapping(body.get("spec"))
    out = entry_findings(body)
    resolution = spec.get("resolution", "NONE")
    if resolution in ("DNS", "DNS_ROUND_ROBIN") and not as_list(spec.get("endpoints")) \
            and not spec.get("workloadSelector"):
        out += [Finding(codes.WILDCARD_DNS_HOST, ("spec", "hosts", i),
                        f"host {host!r} cannot be resolved with resolution {resolution} and "
                        "no endpoints: list endpoints (addresses or names) for the hosts "
                        "it covers, or use resolution NONE")
                for i, host in enumerate(as_list(spec.get("hosts"))) if "*" in str(host)]
    return out


def _wildcards_and_names(objects: list[StateObject]) -> tuple[list[str], set[str]]:
    """The wildcard ServiceEntry hosts that are applied (resolved STATIC or DNS: with
    NONE they are warned about), and every host known by its exact name."""
    wild: list[str] = []
    exact: set[str] = set()
    for obj in objects:
        if obj.key.kind == "Service":
            exact.add(service_fqdn(obj.key.name, obj.namespace))
        elif obj.key.kind == "ServiceEntry":
            applied = obj.spec.get("resolution", "NONE") != "NONE"
            for host in as_list(obj.spec.get("hosts")):
                name = fqdn(str(host), obj.namespace)
                if "*" not in name:
                    exact.add(name)
                elif applied and name.startswith("*."):
                    wild.append(name)
    return wild, exact


def check_wildcard_routes(objects: list[StateObject], report: Callable[[StateObject], bool],
                          found: Findings) -> None:
    """A mesh VirtualService for a name that only a wildcard ServiceEntry host covers
    (MP2061): its routes are not applied (the covered names are routed by the pattern's
    routes), so say so and name the pattern to write instead."""
    wild, exact = _wildcards_and_names(objects)
    if not wild:
        return
    for obj in objects:
        if obj.key.kind != "VirtualService" or not report(obj):
            continue
        gateways = as_list(obj.spec.get("gateways"))
        if gateways and "mesh" not in gateways:
            continue
        for i, host in enumerate(as_list(obj.spec.get("hosts"))):
            name = fqdn(str(host), obj.namespace)
            covering = next((w for w in wild if host_matches(w, name)), None)
            if "*" in name or name in exact or covering is None:
                continue
            found.add(codes.WILDCARD_COVERED_HOST, obj, ("spec", "hosts", i),
                      f"host {name} is known only through the wildcard ServiceEntry host "
                      f"{covering}: the mesh routes the names it covers by the routes of "
                      f"{covering}, so these routes are not applied to mesh traffic; write "
                      f"the VirtualService for {covering} (a match on the :authority "
                      "header tells the names apart), or add a ServiceEntry for this name")
