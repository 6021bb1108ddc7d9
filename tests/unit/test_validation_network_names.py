"""A WorkloadEntry's or WorkloadGroup's ``network`` that ``meshNetworks`` does not list
(MP2032), pure.

Istio accepts any network name; one no network lists has no gateway, so Istio's
split horizon (``EndpointsByNetworkFilter``) leaves its endpoints out for proxies on
every other network. Without ``meshNetworks`` Istio's mesh is one network and the name
changes nothing, so nothing is said.
"""

from __future__ import annotations

from typing import Any

from tests.two_networks import TWO_NETWORKS

from meshpilot.api.identity import ObjectKey
from meshpilot.api.loader import load_text
from meshpilot.api.mesh_networks import MeshNetworks
from meshpilot.validation.mesh_config import parse_mesh_config
from meshpilot.validation.network_names import check_network_names
from meshpilot.validation.state_object import StateObject

MESH = TWO_NETWORKS
DOCS = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: default}
spec:
  address: 10.3.0.2
  network: netwrok-a
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: vms, namespace: default}
spec:
  metadata: {labels: {app: vm}}
  template:
    serviceAccount: vm
    network: elsewhere
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-2, namespace: default}
spec: {address: 10.3.0.3, network: network-a}
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: plain, namespace: default}
spec:
  template: {serviceAccount: vm}
"""


def networks() -> MeshNetworks:
    config, _ = parse_mesh_config(MESH, "mesh.yaml")
    return config.networks


def state() -> list[StateObject]:
    out = []
    for doc in load_text(DOCS, "vms.yaml"):
        data: dict[str, Any] = doc.data
        key = ObjectKey("networking.istio.io", data["kind"], "default",
                        data["metadata"]["name"])
        out.append(StateObject(key, data, doc, changed=True))
    return out


def test_a_network_meshnetworks_does_not_list_is_warned_at_its_line() -> None:
    found = check_network_names(state(), networks())
    assert [(d.code, d.object, d.file, d.line, d.path) for d in found] == [
        ("MP2032", "WorkloadEntry default/vm-1", "vms.yaml", 6,
         "spec.network"),
        ("MP2032", "WorkloadGroup default/vms", "vms.yaml", 15,
         "spec.template.network")]
    assert all(d.severity == "warning" for d in found)
    assert "did you mean 'network-a'?" in found[0].message
    assert "listed: network-a, network-b" in found[1].message


def test_nothing_is_said_without_named_networks_or_for_objects_not_reported() -> None:
    assert check_network_names(state(), MeshNetworks()) == []
    assert check_network_names(state(), networks(), lambda obj: False) == []
