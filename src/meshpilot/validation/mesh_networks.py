"""Reading the ``meshNetworks`` block of a mesh config file (Istio's shape, see
:mod:`meshpilot.api.mesh_networks`).

Checked as strictly as the rest of the file (:mod:`meshpilot.validation.mesh_config`),
because a wrong network sends a proxy's traffic to a gateway that cannot pass it on, or
straight at an address it cannot reach: an unknown field lists the valid ones (MP0080), a
bad value says what would be valid (MP0081), a registry or gateway service this control
plane does not have is MP0089, and a network no other network can reach (no gateway)
is warned about (MP2036). Every finding is placed at its field's line by the caller's
``say``.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from meshpilot.api.mesh_networks import (
    EAST_WEST_SERVICE,
    LOCAL_REGISTRY,
    MeshNetwork,
    MeshNetworks,
    NetworkGateway,
)
from meshpilot.validation.codes import (
    LOCAL_NETWORK_NOT_LISTED,
    LOCAL_NETWORK_REFUSED,
    MESH_CONFIG_FIELD,
    MESH_CONFIG_IGNORED,
    MESH_CONFIG_VALUE,
    MESH_NETWORK_UNKNOWN,
    NETWORK_NO_GATEWAY,
    Code,
)

Say = Callable[[Code, tuple[str | int, ...], str], None]
ROOT = "meshNetworks"
MAX_NETWORKS = 64
MAX_ITEMS = 64
ENDPOINT_FIELDS = ("fromCidr", "fromRegistry")
GATEWAY_FIELDS = ("address", "registryServiceName", "port")
NETWORK_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
"""A network name as Istio's ``topology.istio.io/network`` label holds it: a label value."""
IGNORED: Mapping[str, str] = MappingProxyType({
    "locality": "the gateway's endpoints keep the locality of the endpoints behind it"})


def _fields(say: Say, data: dict[str, Any], path: tuple[str | int, ...],
            valid: tuple[str, ...]) -> None:
    for key in data:
        name = str(key)
        if name in valid:
            continue
        if name in IGNORED:
            say(MESH_CONFIG_IGNORED, (*path, name), f"'{name}' is an Istio meshNetworks "
                f"field meshpilot does not act on: {IGNORED[name]}")
            continue
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        say(MESH_CONFIG_FIELD, (*path, name),
            f"unknown field '{name}'{hint}; valid fields here: {', '.join(valid)}")


def _one_of(say: Say, item: Any, path: tuple[str | int, ...], choices: tuple[str, str],
            example: str) -> tuple[str, str] | None:
    """The one field of ``choices`` that ``item`` sets, with its string value."""
    given = [c for c in choices if isinstance(item, dict) and c in item]
    if len(given) != 1:
        say(MESH_CONFIG_VALUE, path, f"each item sets exactly one of {' or '.join(choices)}, "
            f"e.g. {example}")
        return None
    value = item[given[0]]
    if not isinstance(value, str) or not value:
        say(MESH_CONFIG_VALUE, (*path, given[0]), f"{given[0]} must be a non-empty string")
        return None
    return given[0], value


def _endpoints(say: Say, items: Any, path: tuple[str | int, ...]
               ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    cidrs: list[str] = []
    registries: list[str] = []
    for i, item in enumerate(_list(say, items, path)):
        if isinstance(item, dict):
            _fields(say, item, (*path, i), ENDPOINT_FIELDS)
        chosen = _one_of(say, item, (*path, i), ("fromCidr", "fromRegistry"),
                         "{fromCidr: 10.2.0.0/16} or {fromRegistry: Kubernetes}")
        if chosen is None:
            continue
        field, value = chosen
        if field == "fromCidr":
            try:
                cidrs.append(str(ipaddress.ip_network(value, strict=False)))
            except ValueError:
                say(MESH_CONFIG_VALUE, (*path, i, field),
                    f"fromCidr {value!r} is not an address block, e.g. 10.2.0.0/16")
        elif value != LOCAL_REGISTRY:
            say(MESH_NETWORK_UNKNOWN, (*path, i, field),
                f"fromRegistry {value!r} names no registry here: the only one is "
                f"'{LOCAL_REGISTRY}' (the control-plane host's pods); place other "
                "workloads with fromCidr or their own network field")
        else:
            registries.append(value)
    return tuple(cidrs), tuple(registries)


def _gateway(say: Say, item: Any, path: tuple[str | int, ...]) -> NetworkGateway | None:
    if isinstance(item, dict):
        _fields(say, item, path, GATEWAY_FIELDS)
    chosen = _one_of(say, item, path, ("address", "registryServiceName"),
                     f"{{address: 10.1.0.1, port: 15443}} or {{registryServiceName: "
                     f"{EAST_WEST_SERVICE}, port: 15443}}")
    port = item.get("port") if isinstance(item, dict) else None
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        say(MESH_CONFIG_VALUE, (*path, "port"),
            f"port must be a number 1-65535 (the gateway's, e.g. 15443), not {port!r}")
        return None
    if chosen is None:
        return None
    field, value = chosen
    if field == "address":
        try:
            return NetworkGateway(port, address=str(ipaddress.ip_address(value)))
        except ValueError:
            say(MESH_CONFIG_VALUE, (*path, field),
                f"address {value!r} is not an IP address (a gateway is given by address)")
            return None
    if value != EAST_WEST_SERVICE:
        say(MESH_NETWORK_UNKNOWN, (*path, field),
            f"registryServiceName {value!r} names no gateway service here: the only one is "
            f"{EAST_WEST_SERVICE} (the control plane's east-west gateway, up --listen); "
            "give any other gateway by address")
        return None
    return NetworkGateway(port, registry_service_name=value)


def _list(say: Say, items: Any, path: tuple[str | int, ...]) -> list[Any]:
    if items is None:
        return []
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        say(MESH_CONFIG_VALUE, path, f"{path[-1]} must be a list of at most {MAX_ITEMS} items")
        return []
    return items


def _network(say: Say, name: str, body: Any, path: tuple[str | int, ...]
             ) -> MeshNetwork | None:
    if not isinstance(body, dict):
        say(MESH_CONFIG_VALUE, path, f"network {name!r} must be an object with endpoints "
            "and gateways")
        return None
    _fields(say, body, path, ("endpoints", "gateways"))
    cidrs, registries = _endpoints(say, body.get("endpoints"), (*path, "endpoints"))
    gateways = tuple(g for i, item in enumerate(_list(say, body.get("gateways"),
                                                      (*path, "gateways")))
                     if (g := _gateway(say, item, (*path, "gateways", i))) is not None)
    if not body.get("gateways"):
        say(NETWORK_NO_GATEWAY, path, f"network {name!r} has no gateways: proxies on other "
            "networks do not reach its endpoints (Istio drops them the same way); add "
            "gateways: [{address: ..., port: 15443}] to reach it")
    return MeshNetwork(name, cidrs, registries, gateways)


def parse_mesh_networks(say: Say, data: Any) -> MeshNetworks:
    """The networks of a ``meshNetworks`` value (findings through ``say``)."""
    path: tuple[str | int, ...] = (ROOT,)
    if not isinstance(data, dict):
        say(MESH_CONFIG_VALUE, path, "meshNetworks must be an object: {networks: {NAME: "
            "{endpoints: [...], gateways: [...]}}}")
        return MeshNetworks()
    _fields(say, data, path, ("networks",))
    networks = data.get("networks") or {}
    if not isinstance(networks, dict) or len(networks) > MAX_NETWORKS:
        say(MESH_CONFIG_VALUE, (*path, "networks"), f"networks must be an object of at most "
            f"{MAX_NETWORKS} networks by name")
        return MeshNetworks()
    out = []
    for name, body in networks.items():
        where = (*path, "networks", str(name))
        if not isinstance(name, str) or not name:
            say(MESH_CONFIG_VALUE, where, "a network's name must be a non-empty string")
            continue
        network = _network(say, name, body, where)
        if network is not None:
            out.append(network)
    local = [n.name for n in out if LOCAL_REGISTRY in n.registries]
    if len(local) > 1:
        say(MESH_CONFIG_VALUE, (*path, "networks"), f"fromRegistry {LOCAL_REGISTRY} is "
            f"listed by networks {', '.join(local)}: the control-plane host is on one")
    return MeshNetworks(tuple(out))


def network_name_problem(name: str) -> str:
    """Why ``name`` cannot be a network's name ("" when it can): it is the value of the
    ``topology.istio.io/network`` label, so a Kubernetes label value."""
    if NETWORK_NAME.fullmatch(name):
        return ""
    return (f"{name!r} is not a network name: 1 to 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (a label value, as Istio's "
            "topology.istio.io/network), e.g. network-a")


def _registry_item(data: Any, network: str) -> tuple[str | int, ...]:
    """The path of ``network``'s ``fromRegistry: Kubernetes`` item in ``data``."""
    path: tuple[str | int, ...] = (ROOT, "networks", network)
    items = (((data or {}).get("networks") or {}).get(network) or {}).get("endpoints") or []
    for i, item in enumerate(items if isinstance(items, list) else []):
        if isinstance(item, dict) and item.get("fromRegistry") == LOCAL_REGISTRY:
            return (*path, "endpoints", i, "fromRegistry")
    return path


def with_local_network(say: Say, data: Any, networks: MeshNetworks, name: str
                       ) -> MeshNetworks:
    """``networks`` with the control-plane host on ``name`` (``up --network``): that
    network lists ``fromRegistry: Kubernetes`` as if the file said so.

    The flag and the file must agree, as Istio's cluster network and its meshNetworks
    registry must: a file that puts the registry on another network is refused (MP0095)
    rather than overridden, since either could be the one meant. A network the file does
    not list is added with no gateway and warned about (MP2039): proxies on other
    networks then do not reach this host's pods (Istio drops them the same way)."""
    listed = networks.registry_network()
    if listed and listed != name:
        say(LOCAL_NETWORK_REFUSED, _registry_item(data, listed),
            f"up --network {name} puts the control-plane host on network {name!r}, and "
            f"this fromRegistry: {LOCAL_REGISTRY} puts it on {listed!r}: it is on one "
            f"network; give --network {listed}, or move this item to network {name!r}")
        return networks
    if not any(n.name == name for n in networks.networks):
        names = ", ".join(n.name for n in networks.networks)
        say(LOCAL_NETWORK_NOT_LISTED, (ROOT, "networks"),
            f"up --network {name}: meshNetworks lists no network {name!r} (it lists {names}), "
            "so it has no gateway and proxies on other networks do not reach this host's "
            f"pods; list it, e.g. {name}: {{endpoints: [{{fromRegistry: {LOCAL_REGISTRY}}}], "
            f"gateways: [{{registryServiceName: {EAST_WEST_SERVICE}, port: 15443}}]}}")
        return MeshNetworks((*networks.networks,
                             MeshNetwork(name, registries=(LOCAL_REGISTRY,))))
    return MeshNetworks(tuple(
        replace(n, registries=(*n.registries, LOCAL_REGISTRY))
        if n.name == name and LOCAL_REGISTRY not in n.registries else n
        for n in networks.networks))
