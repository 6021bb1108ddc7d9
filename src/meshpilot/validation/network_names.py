"""The network a WorkloadEntry or WorkloadGroup names must be one ``meshNetworks`` lists.

Istio takes any string as a workload's ``network``; a name no network lists has no
``fromCidr``, no registry and no gateway, so the workload's endpoints are reached only
by proxies that happen to be on a network of the same name, and from every other
network not at all (split horizon drops an endpoint whose network has no gateway). That
is almost always a typo or a network left out of the mesh config, and nothing else would
say so: the object is applied (the mesh config may be corrected, or the object be meant
for it) and warned about (MP2032) at apply and in analyze and describe, naming the
networks there are. Without ``meshNetworks`` every network name is accepted silently:
the mesh is one flat network and no name changes where traffic goes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from meshpilot.api.mesh_networks import MeshNetworks
from meshpilot.validation import codes
from meshpilot.validation.diagnostics import Diagnostic
from meshpilot.validation.shapes import as_mapping
from meshpilot.validation.state_object import Findings, StateObject

Report = Callable[[StateObject], bool]
NET = "networking.istio.io"
_WHERE: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "WorkloadEntry": ("spec", "network"),
    "WorkloadGroup": ("spec", "template", "network")})


def check_network_names(objects: Iterable[StateObject], networks: MeshNetworks,
                        report: Report = lambda obj: True) -> list[Diagnostic]:
    """MP2032 for each reported WorkloadEntry and WorkloadGroup whose ``network`` no
    network of ``networks`` has; nothing without named networks."""
    if not networks:
        return []
    listed = sorted(n.name for n in networks.networks)
    found = Findings()
    for obj in objects:
        named = _named(obj) if report(obj) else None
        if named is None or named[1] in listed:
            continue
        path, name = named
        close = difflib.get_close_matches(name, listed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        found.add(codes.NETWORK_NOT_LISTED, obj, path,
                  f"network '{name}' is not in the mesh config's meshNetworks{hint}: its "
                  f"endpoints get no gateway and proxies on other networks do not reach "
                  f"them; listed: {', '.join(listed)}")
    return found.items


def _named(obj: StateObject) -> tuple[tuple[str, ...], str] | None:
    """(path, name) of the network ``obj`` names, if it is a WorkloadEntry or
    WorkloadGroup that names one."""
    path = _WHERE.get(obj.key.kind) if obj.key.group == NET else None
    if path is None:
        return None
    holder = as_mapping(obj.spec.get("template")) if len(path) == 3 else obj.spec
    name = holder.get("network")
    return (path, name) if isinstance(name, str) and name else None
