"""Fields of a Kubernetes Service that meshpilot accepts and does not act on: warned.

A Service in meshpilot is a name, a selector and ports: clients reach it by name
through their sidecar, which balances over the selected pods' endpoints. What
Kubernetes does with the rest (virtual and external IPs, node ports, load balancers,
kube-proxy's session affinity and traffic policies) has nothing to act on here. The
Service is applied without those fields and the warning (MP2016) says so, since
Istio's own manifests carry some of them and should apply whole.

Rows read the body in wire form with defaults filled in (``type: ClusterIP``, port
``protocol: TCP``), so only what differs from the defaults is reported.
"""

from __future__ import annotations

from typing import Any

from meshpilot.validation.unapplied_fields import EACH, Unapplied, given, row

_SPEC = ("spec",)
_NO_VIRTUAL_IP = ("clients reach a Service by name through their sidecar, which sends to "
                  "the pods' own addresses; there is no virtual IP")


def _other_than(*defaults: Any) -> Any:
    return lambda _, value: given(_, value) and value not in defaults


SERVICE: tuple[Unapplied, ...] = (
    row(*_SPEC, "type", when=lambda _, value: value in ("NodePort", "LoadBalancer"),
        why="type {value} is not applied: nothing is exposed on a node or load balancer; "
            "expose the Service through an Istio Gateway (its port is listed under "
            "ingress_ports in endpoints.json)"),
    row(*_SPEC, "type", when=lambda _, value: value == "ExternalName",
        why="type ExternalName is not applied: no alias to externalName is made, so the "
            "Service has no endpoints; describe the external host with a ServiceEntry "
            "(resolution DNS) instead"),
    *(row(*_SPEC, field, why=f"{{field}} is not applied: {_NO_VIRTUAL_IP}")
      for field in ("clusterIP", "clusterIPs", "externalIPs", "ipFamilies", "ipFamilyPolicy")),
    *(row(*_SPEC, field,
          why="{field} is not applied: no load balancer or node port is provisioned; "
              "remove it")
      for field in ("loadBalancerIP", "loadBalancerSourceRanges", "loadBalancerClass",
                    "allocateLoadBalancerNodePorts", "externalTrafficPolicy",
                    "healthCheckNodePort")),
    row(*_SPEC, "ports", EACH, "nodePort",
        why="nodePort is not applied: nothing listens on a node port; remove it"),
    row(*_SPEC, "ports", EACH, "protocol", when=_other_than("TCP"),
        why="protocol {value} is not applied: sidecars proxy TCP only, so this port is "
            "not reachable through the mesh"),
    row(*_SPEC, "sessionAffinity", when=_other_than("None"),
        why="sessionAffinity {value} is not applied: sidecars balance each request; for "
            "sticky sessions use a DestinationRule with loadBalancer.consistentHash"),
    row(*_SPEC, "sessionAffinityConfig",
        why="sessionAffinityConfig is not applied: see sessionAffinity; use a "
            "DestinationRule with loadBalancer.consistentHash"),
    row(*_SPEC, "internalTrafficPolicy", when=_other_than("Cluster"),
        why="internalTrafficPolicy {value} is not applied: every endpoint is on this mesh's "
            "one node, so traffic goes to any of them"),
    row(*_SPEC, "trafficDistribution",
        why="trafficDistribution is not applied: endpoints have no zone, so traffic is "
            "balanced over every endpoint"),
    row(*_SPEC, "publishNotReadyAddresses", when=lambda _, value: value is True,
        why="publishNotReadyAddresses is not applied: only ready pods are endpoints"),
)
