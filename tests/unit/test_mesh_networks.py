"""Named networks (Istio's ``meshNetworks``) and split-horizon EDS, pure.

Follows Istio's multi-network behaviour: a workload's network is its own ``network``,
else its ``topology.istio.io/network`` label, else the ``fromCidr`` block holding its
address, else its registry's network (``fromRegistry``); a proxy sees the endpoints of
its own network (or of none) directly and those of another network as one endpoint per
gateway of that network, an equal share of their weight each (Istio's
``EndpointsByNetworkFilter``), dropping those that take no mutual TLS or whose network
has no gateway; an east-west gateway forwards to the workloads of its own network.
"""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.endpoint.v3 import endpoint_pb2

from meshpilot.api.identity import ObjectKey
from meshpilot.api.mesh_config import MeshConfig
from meshpilot.api.mesh_networks import EAST_WEST_SERVICE
from meshpilot.mesh import networks
from meshpilot.mesh.builder import SnapshotBuilder
from meshpilot.mesh.model import InboundPort, MeshSnapshot, ProxyNode, WorkloadInstance
from meshpilot.validation.mesh_config import MeshConfigError, parse_mesh_config
from meshpilot.xds import ENDPOINT, ProxyConfigBuilder
from meshpilot.xds.resources import prepare, versions
from meshpilot.xds.translate import build_resources, east_west, endpoints, names
from meshpilot.xds.translate import networks as split
from meshpilot.xds.translate.tls import SOCKET_MATCH_FILTER, endpoint_tls_metadata

NET = "networking.istio.io"
HOST = "myapp.default.svc.cluster.local"
CP = "10.1.0.1"  # the control plane's --listen address, on network-b
MESH = f"""\
meshNetworks:
  networks:
    network-b:
      endpoints: [{{fromRegistry: Kubernetes}}]
      gateways: [{{registryServiceName: {EAST_WEST_SERVICE}, port: 15443}}]
    network-a:
      endpoints: [{{fromCidr: 10.3.0.0/16}}]
      gateways: [{{address: 10.3.0.1, port: 15443}}, {{address: 10.3.0.9, port: 15443}}]
    network-c:
      endpoints: [{{fromCidr: 10.5.0.0/16}}]
      gateways: []
"""


def mesh_config() -> MeshConfig:
    config, _ = parse_mesh_config(MESH, "mesh.yaml")
    resolved = networks.gateway_named(config, CP)
    assert resolved is not None
    return resolved


def entry(name: str, address: str, version: str, network: str | None = None,
          labels: dict[str, str] | None = None, auto: bool = True
          ) -> tuple[ObjectKey, dict[str, Any]]:
    spec: dict[str, Any] = {"address": address, "ports": {"http": 8080},
                            "labels": {"app": "myapp", "version": version, **(labels or {})}}
    if network:
        spec["network"] = network
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    body: dict[str, Any] = {"apiVersion": f"{NET}/v1", "kind": "WorkloadEntry",
                            "metadata": meta, "spec": spec}
    if auto:
        meta["annotations"] = {"istio.io/autoRegistrationGroup": "myapp"}
        body["status"] = {"conditions": [{"type": "Healthy", "status": "True"}]}
    return ObjectKey(NET, "WorkloadEntry", "default", name), body


def objects() -> list[tuple[ObjectKey, dict[str, Any]]]:
    meta = {"name": "myapp", "namespace": "default"}
    return [
        (ObjectKey("", "Service", "default", "myapp"), {
            "apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"selector": {"app": "myapp"}, "ports": [{"name": "http", "port": 8080}]}}),
        entry("vm-a", "10.3.0.2", "v2"),  # network-a by its address (fromCidr)
        entry("vm-b", "10.2.0.2", "v2", network="network-b"),  # its own field
        entry("vm-l", "10.9.0.2", "v2", labels={"topology.istio.io/network": "network-a"}),
        entry("vm-c", "10.5.0.2", "v2"),  # network-c: no gateway
        entry("plain", "10.3.0.7", "v2", auto=False),  # network-a, no sidecar
    ]


def pods() -> list[WorkloadInstance]:
    return [WorkloadInstance(name="myapp-v1-1", namespace="default", ip="127.40.0.1",
                             labels={"app": "myapp", "version": "v1"},
                             ports=(InboundPort(8080, 18080, "http"),))]


def snapshot(config: MeshConfig | None = None) -> MeshSnapshot:
    return SnapshotBuilder(mesh_config=config or mesh_config()).build(1, objects(), pods())


def joined(name: str, address: str) -> ProxyNode:
    return ProxyNode(id=f"sidecar~{address}~{name}.default~default.svc.cluster.local",
                     kind="sidecar", namespace="default", ip=address, workload=name,
                     outbound_ip="127.0.0.1")


def addresses(cla: endpoint_pb2.ClusterLoadAssignment) -> list[tuple[str, int, int]]:
    return sorted((lb.endpoint.address.socket_address.address,
                   lb.endpoint.address.socket_address.port_value,
                   lb.load_balancing_weight.value)
                  for group in cla.endpoints for lb in group.lb_endpoints)


def test_the_mesh_config_reads_istio_s_mesh_networks() -> None:
    """The networks, their blocks and registries, and gateways by address or by the
    east-west gateway's service name (resolved to the --listen address); a network
    with no gateways is warned about (MP2036) at its line."""
    config, warnings = parse_mesh_config(MESH, "mesh.yaml")
    nets = config.networks
    assert [n.name for n in nets.networks] == ["network-b", "network-a", "network-c"]
    assert nets.registry_network() == "network-b"
    assert nets.network_of_address("10.3.4.5") == "network-a"
    assert nets.network_of_address("192.0.2.1") == ""
    assert nets.gateways("network-b") == ()  # named by service: no address yet
    assert mesh_config().networks.gateways("network-b") == ((CP, 15443),)
    assert mesh_config().networks.gateways("network-a") == (("10.3.0.1", 15443),
                                                            ("10.3.0.9", 15443))
    assert [(d.code, d.path, d.line) for d in warnings] == [
        ("MP2036", "meshNetworks.networks.network-c", 9)]
    assert networks.gateway_named(config, None) is config  # no --listen: nothing to name


@pytest.mark.parametrize(("text", "code", "path"), [
    ("networks: {n: {endpoints: [{fromRegistry: cluster2}]}}", "MP0089",
     "meshNetworks.networks.n.endpoints[0].fromRegistry"),
    ("networks: {n: {gateways: [{registryServiceName: gw.x.svc, port: 1}]}}", "MP0089",
     "meshNetworks.networks.n.gateways[0].registryServiceName"),
    ("networks: {n: {endpoints: [{fromCidr: 10.0.0.0/33}]}}", "MP0081",
     "meshNetworks.networks.n.endpoints[0].fromCidr"),
    ("networks: {n: {endpoints: [{fromCidr: 10.0.0.0/8, fromRegistry: Kubernetes}]}}",
     "MP0081", "meshNetworks.networks.n.endpoints[0]"),
    ("networks: {n: {gateways: [{address: 10.0.0.1}]}}", "MP0081",
     "meshNetworks.networks.n.gateways[0].port"),
    ("networks: {n: {gateways: [{address: gw.example, port: 15443}]}}", "MP0081",
     "meshNetworks.networks.n.gateways[0].address"),
    ("networks: {n: {gateway: []}}", "MP0080", "meshNetworks.networks.n.gateway"),
    ("networks: {a: {endpoints: [{fromRegistry: Kubernetes}]}, "
     "b: {endpoints: [{fromRegistry: Kubernetes}]}}", "MP0081", "meshNetworks.networks"),
])
def test_a_bad_mesh_networks_value_is_refused_at_its_field(text: str, code: str,
                                                          path: str) -> None:
    """Each mistake names the file, line, field path and what would be valid, and the
    control plane does not start on it."""
    with pytest.raises(MeshConfigError) as raised:
        parse_mesh_config(f"meshNetworks:\n  {text}\n", "mesh.yaml")
    found = [(d.code, d.path) for d in raised.value.diagnostics if d.severity == "error"]
    assert (code, path) in found, raised.value
    (d,) = [d for d in raised.value.diagnostics if (d.code, d.path) == (code, path)]
    assert d.file == "mesh.yaml" and d.line == 2


def test_workloads_and_proxies_are_placed_on_their_networks() -> None:
    """Pods are the registry's (network-b); an entry by its field, its label or its
    address; a joined sidecar is on its entry's network, every proxy of the control
    plane on its host's. Without meshNetworks only an entry's own field is kept, and
    no proxy is on any network (so nothing is split)."""
    snap = snapshot()
    placed = {e.workload: e.network for e in snap.endpoints[HOST]}
    assert placed == {"myapp-v1-1": "network-b", "vm-a": "network-a", "vm-b": "network-b",
                      "vm-l": "network-a", "vm-c": "network-c", "plain": "network-a"}
    assert networks.proxy_network(snap, joined("vm-a", "10.3.0.2")) == "network-a"
    assert networks.proxy_network(snap, joined("vm-l", "10.9.0.2")) == "network-a"
    mesh_proxy = ProxyNode(id="client~127.0.0.1~mesh-proxy.default~default.svc.cluster.local",
                           kind="client", namespace="default", ip="127.0.0.1")
    assert networks.proxy_network(snap, mesh_proxy) == "network-b"
    flat = SnapshotBuilder().build(1, objects(), pods())
    assert {e.network for e in flat.endpoints[HOST]} == {"", "network-b"}  # only its own
    assert networks.proxy_network(flat, joined("vm-a", "10.3.0.2")) == ""
    assert flat.entry_networks == {}


def _cla() -> endpoint_pb2.ClusterLoadAssignment:
    cla = endpoints.load_assignment("c", [("10.3.0.2", 8080, 2), ("10.3.0.3", 8080, 3),
                                          ("10.2.0.2", 8080, 1), ("10.5.0.2", 8080, 1),
                                          ("10.3.0.7", 8080, 1), ("10.8.0.1", 8080, 1)])
    nets = ["network-a", "network-a", "network-b", "network-c", "network-a", ""]
    for lb, net, mtls in zip(cla.endpoints[0].lb_endpoints, nets,
                             [True, True, True, True, False, False], strict=True):
        if mtls:
            lb.metadata.CopyFrom(endpoint_tls_metadata(True))
        if net:
            lb.metadata.filter_metadata[endpoints.NETWORK_FILTER].update(
                {endpoints.NETWORK_KEY: net})
    return cla


def test_split_horizon_keeps_its_own_network_and_reaches_others_at_their_gateways() -> None:
    """From network-b: its own endpoint and the one of no network stay; network-a's two
    mutual-TLS endpoints (weights 2 and 3) become its two gateways, 2 each; its
    plaintext one and network-c's (no gateway) are left out. From network-a the picture
    turns around; a proxy of no network sees everything directly."""
    nets = mesh_config().networks
    cla = _cla()
    from_b = split.split_horizon(cla, "network-b", nets)
    assert addresses(from_b) == [("10.2.0.2", 8080, 1), ("10.3.0.1", 15443, 2),
                                 ("10.3.0.9", 15443, 2), ("10.8.0.1", 8080, 1)]
    through = [lb for lb in from_b.endpoints[0].lb_endpoints
               if lb.endpoint.address.socket_address.port_value == 15443]
    tls = endpoint_tls_metadata(True).filter_metadata[SOCKET_MATCH_FILTER]
    for lb in through:  # the caller still sends mutual TLS, with its usual SNI
        assert lb.metadata.filter_metadata[SOCKET_MATCH_FILTER] == tls
    from_a = split.split_horizon(cla, "network-a", nets)
    assert addresses(from_a) == [(CP, 15443, 1), ("10.3.0.2", 8080, 2),
                                 ("10.3.0.3", 8080, 3), ("10.3.0.7", 8080, 1),
                                 ("10.8.0.1", 8080, 1)]
    assert split.split_horizon(cla, "", nets) is cla
    assert len(addresses(cla)) == 6  # the caller's message is left as it was


def test_the_shared_build_equals_the_reference_for_each_network() -> None:
    """ProxyConfigBuilder gives a proxy on network-a what the reference translation
    gives it (network-b's entry at the control plane's gateway), in a class apart from
    a proxy of the same kind on network-b."""
    snap = snapshot()
    builder = ProxyConfigBuilder()
    on_a = networks.on_network(snap, joined("vm-a", "10.3.0.2"))
    on_b = networks.on_network(snap, joined("vm-b", "10.2.0.2"))
    assert (on_a.network, on_b.network) == ("network-a", "network-b")
    for node in (on_a, on_b):
        got = builder.config_for(snap, node)
        want = prepare(build_resources(snap, node))
        assert versions(got[ENDPOINT]) == versions(want[ENDPOINT])
    plain = "outbound|8080||" + HOST
    seen_a = addresses(builder.config_for(snap, on_a)[ENDPOINT][plain].message)
    assert (CP, 15443, 2) in seen_a  # vm-b and the pod (network-b) through the gateway
    assert ("10.2.0.2", 8080, 1) not in seen_a and ("10.3.0.2", 8080, 1) in seen_a
    seen_b = addresses(builder.config_for(snap, on_b)[ENDPOINT][plain].message)
    assert ("10.2.0.2", 8080, 1) in seen_b and ("10.3.0.1", 15443, 1) in seen_b
    assert builder.class_key(snap, on_a) != builder.class_key(snap, on_b)


def test_the_east_west_gateway_forwards_to_the_mtls_workloads_of_its_network() -> None:
    """On network-b the gateway serves this host's pod and vm-b (network-b, a sidecar),
    not network-a's or network-c's workloads; without named networks, the pods only."""
    node = networks.on_network(snapshot(), east_west.gateway_node(CP))
    assert node.network == "network-b"
    out, _ = east_west.gateway_resources(snapshot(), node)
    sni = names.outbound_sni(8080, None, HOST)
    assert addresses(out[names.TYPE_ENDPOINT][sni]) == [("10.2.0.2", 8080, 1),
                                                        ("127.40.0.1", 8080, 1)]
    flat = SnapshotBuilder().build(1, objects(), pods())
    out, _ = east_west.gateway_resources(flat, east_west.gateway_node(CP))
    assert addresses(out[names.TYPE_ENDPOINT][sni]) == [("127.40.0.1", 8080, 1)]


def test_a_joined_hosts_pods_are_on_that_hosts_network() -> None:
    """Istio puts a workload on its registry's network (``fromRegistry``), a VM's on its
    WorkloadGroup's ``network``: a pod a joined host runs is on that host's network
    whether the host's entry names it (vm-b: network-b, though the pod's own address is
    in network-a's fromCidr) or its address falls in a fromCidr (vm-a), unless the pod's
    own ``topology.istio.io/network`` label names one; its sidecar (the node id names the
    pod) is on the same network, and split horizon treats its endpoint like the host's:
    a proxy on network-a reaches the pod on network-b through network-b's gateway."""
    def pod(name: str, ip: str, host: str, **labels: str) -> WorkloadInstance:
        return WorkloadInstance(name=name, namespace="default", ip=ip, workload="myapp-v3",
                                labels={"app": "myapp", "version": "v3", **labels},
                                ports=(InboundPort(8080, 40001, "http"),),
                                host_entry=("default", host))

    joined_pods = [pod("myapp-v3-b", "10.3.0.40", "vm-b"),
                   pod("myapp-v3-a", "10.9.0.41", "vm-a"),
                   pod("myapp-v3-l", "10.3.0.42", "vm-b",
                       **{"topology.istio.io/network": "network-c"}),
                   pod("myapp-v3-gone", "10.3.0.43", "vm-none")]
    snap = SnapshotBuilder(mesh_config=mesh_config()).build(
        1, objects(), [*pods(), *joined_pods])
    placed = {e.address: e.network for e in snap.endpoints[HOST]}
    assert placed["10.3.0.40"] == "network-b"  # its host's field, not its own address
    assert placed["10.9.0.41"] == "network-a"  # its host's fromCidr
    assert placed["10.3.0.42"] == "network-c"  # its own label wins
    assert placed["10.3.0.43"] == "network-a"  # no such host: its own address decides
    sidecar = joined("myapp-v3-b", "10.3.0.40")
    assert networks.proxy_network(snap, sidecar) == "network-b"
    assert networks.proxy_network(snap, joined("myapp-v3-a", "10.9.0.41")) == "network-a"

    cla = endpoints.load_assignment("c", [("10.3.0.40", 8080, 1), ("10.3.0.2", 8080, 1)])
    for lb, net in zip(cla.endpoints[0].lb_endpoints, ["network-b", "network-a"],
                       strict=True):
        lb.metadata.CopyFrom(endpoint_tls_metadata(True))
        lb.metadata.filter_metadata[endpoints.NETWORK_FILTER].update(
            {endpoints.NETWORK_KEY: net})
    from_a = split.split_horizon(cla, "network-a", mesh_config().networks)
    assert addresses(from_a) == [(CP, 15443, 1), ("10.3.0.2", 8080, 1)]
    flat = SnapshotBuilder().build(1, objects(), [*pods(), *joined_pods])
    assert {e.network for e in flat.endpoints[HOST] if e.address.startswith("10.3.0.4")} \
        == {""}  # without meshNetworks nothing moves
