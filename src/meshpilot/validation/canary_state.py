"""Canaries across objects: the VirtualService a Canary generates claims only its own
hosts in the mesh.

The generated VirtualService binds the mesh when ``service.gateways`` lists none (or
lists ``mesh``); its ``service.hosts`` are then in-mesh hosts, and one that names
another Service or ServiceEntry would take that service's traffic from every caller in
the mesh, answered by the Canary's pods. That is refused (MP1004) when the Canary is
applied, as a user-written VirtualService claiming a taken host is (MP1002), rather
than found when the controller writes it. ``*`` bound to the mesh is refused too: it
would answer for every host. Hosts on a gateway only are the gateway's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from meshpilot.api.hosts import fqdn, host_matches, service_fqdn
from meshpilot.validation import codes
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.state_object import Findings, StateObject

Report = Callable[[StateObject], bool]
_SERVICE_FORMS = ("", ".svc", ".svc.cluster.local")


def check_canary_hosts(objects: list[StateObject], report: Report, found: Findings) -> None:
    canaries = [o for o in objects if o.key.kind == "Canary" and report(o)]
    if not canaries:
        return
    hosts = dict(_mesh_hosts(objects))
    for canary in canaries:
        service = as_mapping(canary.spec.get("service"))
        gateways = as_list(service.get("gateways"))
        if service.get("delegation") or (gateways and "mesh" not in gateways):
            continue
        own = _own_hosts(canary, service)
        for i, host in enumerate(as_list(service.get("hosts"))):
            path = ("spec", "service", "hosts", i)
            if host == "*":
                found.add(codes.CANARY_HOST_CLAIM, canary, path,
                          "hosts '*' with the mesh gateway would make the generated "
                          "VirtualService answer for every host in the mesh; list the "
                          "Canary's hosts by name, or bind it to a gateway (service.gateways)")
                continue
            for name in canary_host_names(str(host), canary.namespace):
                owner = next((o for h, o in hosts.items()
                              if h not in own and host_matches(name, h)), None)
                if owner is not None:
                    found.add(codes.CANARY_HOST_CLAIM, canary, path,
                              f"host {host} is {owner.key.kind} {owner.namespace}/"
                              f"{owner.key.name}'s: the generated VirtualService binds "
                              "the mesh and would take that service's traffic from every "
                              "caller; remove it, or bind the Canary to a gateway "
                              "(service.gateways)")
                    break


def _mesh_hosts(objects: list[StateObject]) -> Iterator[tuple[str, StateObject]]:
    for obj in objects:
        if obj.key.kind == "Service" and not obj.key.group:
            yield service_fqdn(obj.key.name, obj.namespace), obj
        elif obj.key.kind == "ServiceEntry":
            for host in as_list(obj.spec.get("hosts")):
                yield fqdn(str(host), obj.namespace), obj


def _own_hosts(canary: StateObject, service: dict[str, object]) -> set[str]:
    apex = str(service.get("name") or as_mapping(canary.spec.get("targetRef")).get("name"))
    return {service_fqdn(f"{apex}{suffix}", canary.namespace)
            for suffix in ("", "-primary", "-canary")}


def canary_host_names(host: str, namespace: str) -> set[str]:
    """``host`` as Istio resolves it, and as the Service it names when written
    ``name.namespace`` (with or without ``.svc`` or the cluster domain)."""
    names = {fqdn(host, namespace)}
    for form in _SERVICE_FORMS:
        stem = host.removesuffix(form) if form else host
        parts = stem.split(".")
        if (not form or host.endswith(form)) and len(parts) == 2 and all(parts):
            names.add(service_fqdn(parts[0], parts[1]))
    return names
