"""The east-west gateway's translation (pure): what a joined host's proxy is told of the
control-plane host's pods, and the gateway's own configuration.

Follows Istio's multi-network model: a proxy on another network sees a network's
endpoints as one endpoint at that network's gateway, weighing what they weigh together
(Istio's endpoint aggregation per network), and the east-west gateway in
``AUTO_PASSTHROUGH`` mode routes each connection by its SNI,
``outbound_.PORT_.SUBSET_.HOST``, to the matching local endpoints, without terminating
TLS.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2

from meshpilot.api.identity import ObjectKey
from meshpilot.mesh.builder import SnapshotBuilder
from meshpilot.mesh.model import InboundPort, MeshSnapshot, ProxyNode, WorkloadInstance
from meshpilot.xds import CLUSTER, ENDPOINT, ProxyConfigBuilder
from meshpilot.xds.resources import prepare, versions
from meshpilot.xds.translate import build_resources, east_west, endpoints, names
from meshpilot.xds.translate.tls import endpoint_tls_metadata

NET = "networking.istio.io"
GATEWAY = ("192.0.2.1", east_west.GATEWAY_PORT)
HOST = "myapp.default.svc.cluster.local"
V1 = "outbound|8080|v1|" + HOST


def snapshot() -> MeshSnapshot:
    """myapp with subsets v1/v2: two v1 pods on this host (loopback), and a v2 joined
    host's entry at a bridge address."""
    return SnapshotBuilder().build(1, objects(), pods())


def objects() -> list[tuple[ObjectKey, dict[str, Any]]]:
    meta = {"name": "myapp", "namespace": "default"}
    return [
        (ObjectKey("", "Service", "default", "myapp"), {
            "apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"selector": {"app": "myapp"}, "ports": [{"name": "http", "port": 8080}]}}),
        (ObjectKey(NET, "DestinationRule", "default", "myapp"), {
            "apiVersion": f"{NET}/v1", "kind": "DestinationRule", "metadata": meta,
            "spec": {"host": "myapp", "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}}]}})]


def pods() -> list[WorkloadInstance]:
    pods = [WorkloadInstance(name=f"myapp-v1-{i}", namespace="default", ip=f"127.40.0.{i}",
                             labels={"app": "myapp", "version": "v1"},
                             ports=(InboundPort(8080, 18080, "http"),)) for i in (1, 2)]
    pods.append(WorkloadInstance(name="vm", namespace="default", ip="192.0.2.7",
                                 labels={"app": "myapp", "version": "v2"},
                                 ports=(InboundPort(8080, 9080, "http"),)))
    return pods


def joined_node() -> ProxyNode:
    return ProxyNode(id="sidecar~192.0.2.7~vm.default", kind="sidecar", namespace="default",
                     ip="192.0.2.7", workload="vm", labels={"app": "myapp", "version": "v2"},
                     inbound=(InboundPort(8080, 9080, "http"),), outbound_ip="127.0.0.1",
                     via_gateway=GATEWAY)


def addresses(cla: endpoint_pb2.ClusterLoadAssignment) -> list[tuple[str, int, int]]:
    return sorted((lb.endpoint.address.socket_address.address,
                   lb.endpoint.address.socket_address.port_value,
                   lb.load_balancing_weight.value)
                  for group in cla.endpoints for lb in group.lb_endpoints)


def test_local_mtls_endpoints_become_one_at_the_gateway_others_stay() -> None:
    """Loopback endpoints that take mTLS merge into the gateway (weights summed, the
    tlsMode metadata kept, so the caller still originates mTLS with the SNI); a loopback
    one without a sidecar is left out (the gateway passes mutual TLS only); an endpoint
    on another address is kept as it is."""
    cla = endpoints.load_assignment("c", [("127.40.0.1", 8080, 2), ("127.40.0.2", 8080, 3),
                                          ("127.40.0.3", 8080, 1), ("192.0.2.7", 8080, 1)])
    lbs = cla.endpoints[0].lb_endpoints
    for lb in lbs[:2]:
        lb.metadata.CopyFrom(endpoint_tls_metadata(True))
    out = east_west.via_gateway(cla, GATEWAY)
    assert addresses(out) == [("192.0.2.1", 15443, 5), ("192.0.2.7", 8080, 1)]
    merged = next(lb for lb in out.endpoints[0].lb_endpoints
                  if lb.endpoint.address.socket_address.address == "192.0.2.1")
    assert merged.metadata == endpoint_tls_metadata(True)
    assert len(addresses(cla)) == 4  # the caller's message is left as it was

    remote_only = endpoints.load_assignment("c", [("192.0.2.7", 8080, 1)])
    assert east_west.via_gateway(remote_only, GATEWAY) is remote_only


def test_a_joined_proxy_sees_the_pods_at_the_gateway_and_equals_the_reference() -> None:
    """The shared build gives a proxy with ``via_gateway`` the gateway as the endpoint of
    v1 (both pods, weight 2) and the joined host directly for v2, the same as the
    reference build; a proxy of this host (same namespace and labels) keeps the pods'
    own addresses, in a class of its own."""
    snap = snapshot()
    builder = ProxyConfigBuilder()
    remote = joined_node()
    got = builder.config_for(snap, remote)
    want = prepare(build_resources(snap, remote))
    assert versions(got[ENDPOINT]) == versions(want[ENDPOINT])
    assert versions(got[CLUSTER]) == versions(want[CLUSTER])
    assert addresses(got[ENDPOINT][V1].message) == [("192.0.2.1", 15443, 2)]
    v2 = "outbound|8080|v2|" + HOST
    assert addresses(got[ENDPOINT][v2].message) == [("192.0.2.7", 8080, 1)]

    local = replace(remote, id="sidecar~127.40.0.9~p.default", ip="127.40.0.9",
                    outbound_ip="", via_gateway=None)
    mine = builder.config_for(snap, local)
    assert addresses(mine[ENDPOINT][V1].message) == [("127.40.0.1", 8080, 1),
                                                     ("127.40.0.2", 8080, 1)]
    assert builder.class_key(snap, local) != builder.class_key(snap, remote)
    assert versions(mine[ENDPOINT]) == versions(prepare(build_resources(snap, local))[ENDPOINT])


def test_the_gateway_holds_one_sni_cluster_per_port_and_subset_with_local_pods() -> None:
    """The gateway's clusters are named by the SNI a caller sends for each service port
    and subset, their endpoints the local pods only (the joined host's v2 is not served
    through this host); its listener at the listen address matches exactly those names
    on TLS connections and hands each to the cluster its SNI names."""
    node = east_west.gateway_node("192.0.2.1")
    out, problems = east_west.gateway_resources(snapshot(), node)
    assert problems == []
    plain = names.outbound_sni(8080, None, HOST)
    v1 = names.outbound_sni(8080, "v1", HOST)
    v2 = names.outbound_sni(8080, "v2", HOST)
    assert v1 == "outbound_.8080_.v1_." + HOST
    assert set(out[names.TYPE_CLUSTER]) >= {plain, v1, v2}
    assert addresses(out[names.TYPE_ENDPOINT][v1]) == [("127.40.0.1", 8080, 1),
                                                       ("127.40.0.2", 8080, 1)]
    assert addresses(out[names.TYPE_ENDPOINT][plain]) == addresses(
        out[names.TYPE_ENDPOINT][v1])
    assert addresses(out[names.TYPE_ENDPOINT][v2]) == []
    cluster = out[names.TYPE_CLUSTER][v1]
    assert not cluster.HasField("transport_socket")  # the bytes pass through as they are
    listener = out[names.TYPE_LISTENER][east_west.LISTENER]
    assert isinstance(listener, listener_pb2.Listener)
    assert listener.address.socket_address.address == "192.0.2.1"
    assert listener.address.socket_address.port_value == 15443
    (chain,) = listener.filter_chains
    assert chain.filter_chain_match.transport_protocol == "tls"
    assert set(chain.filter_chain_match.server_names) == set(out[names.TYPE_CLUSTER])
    assert [f.name for f in chain.filters] == [east_west.SNI_CLUSTER_FILTER,
                                               east_west.TCP_PROXY_FILTER]


def test_no_services_no_listener() -> None:
    """With nothing to serve the gateway has no listener (Envoy refuses one with no
    filter chain), rather than one that matches nothing."""
    empty = SnapshotBuilder().build(1, [], [])
    out, _ = east_west.gateway_resources(empty, east_west.gateway_node("192.0.2.1"))
    assert out[names.TYPE_LISTENER] == {} and out[names.TYPE_CLUSTER] == {}


def test_an_envoy_filter_selecting_the_gateway_patches_it() -> None:
    """An EnvoyFilter whose workloadSelector picks the gateway's labels (Istio's
    ``istio: eastwestgateway``) patches its config like any proxy's: here a CLUSTER MERGE
    by the SNI cluster's name in the GATEWAY context (Istio's match by ``cluster.name``)."""
    name = names.outbound_sni(8080, "v1", HOST)
    patch = {"applyTo": "CLUSTER", "match": {"context": "GATEWAY", "cluster": {"name": name}},
             "patch": {"operation": "MERGE", "value": {"connect_timeout": "1.5s"}}}
    body = {"apiVersion": f"{NET}/v1alpha3", "kind": "EnvoyFilter",
            "metadata": {"name": "ew", "namespace": "istio-system"},
            "spec": {"workloadSelector": {"labels": {"istio": "eastwestgateway"}},
                     "configPatches": [patch]}}
    snap = SnapshotBuilder().build(2, [*objects(), (ObjectKey(
        NET, "EnvoyFilter", "istio-system", "ew"), body)], pods())
    out, problems = east_west.gateway_resources(snap, east_west.gateway_node("192.0.2.1"))
    assert problems == []
    assert out[names.TYPE_CLUSTER][name].connect_timeout.ToMilliseconds() == 1500
    other = names.outbound_sni(8080, "v2", HOST)
    assert out[names.TYPE_CLUSTER][other].connect_timeout.ToMilliseconds() == 5000
