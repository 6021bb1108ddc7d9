"""Endpoints of a cluster: the ready workloads of one service port (and subset)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
from envoy.config.endpoint.v3 import endpoint_pb2

from meshpilot.mesh.index import labels_match
from meshpilot.mesh.model import Endpoint, MeshSnapshot
from meshpilot.xds.translate import locality
from meshpilot.xds.translate.tls import endpoint_tls_metadata

NETWORK_FILTER = "istio"
NETWORK_KEY = "network"
"""Where an endpoint's named network is written in its metadata (only when it has one),
for the split-horizon view (:mod:`meshpilot.xds.translate.networks`)."""


HOST_GATEWAY_KEY = "hostGateway"
"""Where the east-west gateway of the host that runs a loopback endpoint is written, when
that is another control-plane replica's host (:mod:`meshpilot.xds.translate.east_west`)."""


def host_gateway_of(lb: ec.LbEndpoint) -> tuple[str, int] | None:
    """(address, port) of the gateway the endpoint's metadata names, or None."""
    fields = lb.metadata.filter_metadata.get(NETWORK_FILTER)
    value = fields.fields.get(HOST_GATEWAY_KEY) if fields is not None else None
    if value is None:
        return None
    host, _, port = value.string_value.rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def network_of(lb: ec.LbEndpoint) -> str:
    """The named network an endpoint's metadata says it is on ("" for none)."""
    fields = lb.metadata.filter_metadata.get(NETWORK_FILTER)
    value = fields.fields.get(NETWORK_KEY) if fields is not None else None
    return value.string_value if value is not None else ""


def select(
    snapshot: MeshSnapshot, host: str, port: int, labels: Mapping[str, str] | None = None
) -> list[Endpoint]:
    """Ready endpoints of ``host:port`` whose labels include ``labels``, in a stable order."""
    chosen = [
        e
        for e in snapshot.endpoints.get(host, ())
        if e.ready and e.service_port == port and labels_match(dict(labels or {}), e.labels)
    ]
    return sorted(chosen, key=lambda e: (e.address, e.port, e.workload, e.namespace))


def socket(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )


def load_assignment(
    cluster: str, addresses: list[tuple[str, int, int]]
) -> endpoint_pb2.ClusterLoadAssignment:
    """A one-locality assignment of ``(address, port, weight)`` triples."""
    lb = [
        ec.LbEndpoint(
            endpoint=ec.Endpoint(address=socket(a, p)),
            load_balancing_weight={"value": max(w, 1)},
        )
        for a, p, w in addresses
    ]
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster)
    if lb:
        out.endpoints.add().lb_endpoints.extend(lb)
    return out


def pipe_assignment(cluster: str, path: str) -> endpoint_pb2.ClusterLoadAssignment:
    """A one-endpoint assignment to the unix domain socket ``path`` (``@name``: an
    abstract socket, as Envoy reads it)."""
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster)
    out.endpoints.add().lb_endpoints.add().endpoint.address.pipe.path = path
    return out


def assignment_for(cluster: str, endpoints: list[Endpoint],
                   mtls: Callable[[Endpoint], bool] = lambda e: False,
                   ) -> tuple[endpoint_pb2.ClusterLoadAssignment, list[list[Endpoint]]]:
    """The cluster's assignment, one group per locality of the endpoints (and the
    endpoints of each group); an endpoint ``mtls`` accepts carries the ``tlsMode:
    istio`` metadata that makes a client's auto-mTLS socket match pick mutual TLS (the
    others get plaintext), as Istio marks its endpoints; one on a named network carries
    its network too."""

    def mark(e: Endpoint, lb: ec.LbEndpoint) -> None:
        if mtls(e):
            lb.metadata.CopyFrom(endpoint_tls_metadata(True))
        if e.network:
            lb.metadata.filter_metadata[NETWORK_FILTER].update({NETWORK_KEY: e.network})
        if e.host_gateway:
            lb.metadata.filter_metadata[NETWORK_FILTER].update(
                {HOST_GATEWAY_KEY: e.host_gateway})

    return locality.assignment(cluster, endpoints, mark)
