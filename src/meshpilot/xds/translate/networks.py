"""Istio's split-horizon EDS: what a proxy on one named network sees of the endpoints.

An endpoint on the proxy's own network (or on none) is kept as it is. The endpoints of
another network are reached through that network's gateways (``meshNetworks``
``gateways``), as Istio's ``EndpointsByNetworkFilter`` does: in each locality group they
become one endpoint per gateway, each weighing an equal share of what they weighed
together, carrying the mutual-TLS metadata, so the caller sends mutual TLS with its usual
SNI and the gateway passes the connection through unopened. An endpoint that takes no
mutual TLS cannot cross (the gateway forwards by SNI only) and an endpoint of a network
with no gateway cannot be reached: both are left out, as in Istio.

Pure: :func:`seen_by` is applied to every ClusterLoadAssignment a proxy gets.
"""

from __future__ import annotations

from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
from envoy.config.endpoint.v3 import endpoint_pb2

from meshpilot.api.mesh_networks import MeshNetworks
from meshpilot.xds.translate import east_west
from meshpilot.xds.translate.endpoints import network_of, socket
from meshpilot.xds.translate.tls import SOCKET_MATCH_FILTER, TLS_MODE_KEY


def _takes_mtls(lb: ec.LbEndpoint) -> bool:
    fields = lb.metadata.filter_metadata.get(SOCKET_MATCH_FILTER)
    return fields is not None and fields.fields.get(TLS_MODE_KEY) is not None


def _elsewhere(lb: ec.LbEndpoint, network: str) -> bool:
    theirs = network_of(lb)
    return bool(theirs) and theirs != network


def _through_gateways(lbs: list[ec.LbEndpoint], gateways: tuple[tuple[str, int], ...]
                      ) -> list[ec.LbEndpoint]:
    total = sum(max(lb.load_balancing_weight.value, 1) for lb in lbs)
    share = max(total // len(gateways), 1)
    out = []
    for address, port in gateways:
        merged = ec.LbEndpoint()
        merged.CopyFrom(lbs[0])
        merged.endpoint.address.CopyFrom(socket(address, port))
        merged.load_balancing_weight.value = share
        out.append(merged)
    return out


def split_horizon(assignment: endpoint_pb2.ClusterLoadAssignment, network: str,
                  networks: MeshNetworks) -> endpoint_pb2.ClusterLoadAssignment:
    """``assignment`` as a proxy on ``network`` must see it (see the module); the very
    same message when nothing in it is on another network."""
    if not network or not networks or not any(
            _elsewhere(lb, network) for group in assignment.endpoints
            for lb in group.lb_endpoints):
        return assignment
    out = endpoint_pb2.ClusterLoadAssignment()
    out.CopyFrom(assignment)
    del out.endpoints[:]
    for group in assignment.endpoints:
        kept = [lb for lb in group.lb_endpoints if not _elsewhere(lb, network)]
        remote: dict[str, list[ec.LbEndpoint]] = {}
        for lb in group.lb_endpoints:
            if _elsewhere(lb, network) and _takes_mtls(lb):
                remote.setdefault(network_of(lb), []).append(lb)
        for name in sorted(remote):
            gateways = networks.gateways(name)
            if gateways:
                kept.extend(_through_gateways(remote[name], gateways))
        if kept:
            copy = out.endpoints.add()
            copy.CopyFrom(group)
            del copy.lb_endpoints[:]
            copy.lb_endpoints.extend(kept)
    return out


def seen_by(assignment: endpoint_pb2.ClusterLoadAssignment, network: str,
            networks: MeshNetworks, via_gateway: tuple[str, int] | None
            ) -> endpoint_pb2.ClusterLoadAssignment:
    """What a proxy on ``network`` (and, on another host, reaching the control-plane
    host's pods through ``via_gateway``) gets of ``assignment``: other networks first,
    then the pods of the control-plane host left on its own network, and those of
    another replica's host through that host's gateway."""
    assignment = split_horizon(assignment, network, networks)
    return east_west.via_gateway(assignment, via_gateway)
