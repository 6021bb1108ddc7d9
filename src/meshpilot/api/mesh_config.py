"""The mesh-wide settings Istio keeps in its ``meshConfig`` (the part meshpilot acts on).

Istio users set ``outboundTrafficPolicy.mode`` in the ``istio`` ConfigMap or
``IstioOperator.spec.meshConfig``; meshpilot reads the same shape from one YAML file given
to ``up`` (``--mesh-config``, or ``mesh.yaml`` in the state directory), so a block copied
from an Istio install means the same here. One field is meshpilot's own:
``dnsResolvers``, the DNS servers the sidecars ask for the addresses of hosts outside the
registry (Istio's sidecars use the pod's resolver; a meshpilot sidecar has no pod of its
own, so it can be told). Reading and checking the file is
:mod:`meshpilot.validation.mesh_config`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meshpilot.api.mesh_networks import NO_NETWORKS, MeshNetworks

OutboundMode = Literal["ALLOW_ANY", "REGISTRY_ONLY"]
ALLOW_ANY: OutboundMode = "ALLOW_ANY"
REGISTRY_ONLY: OutboundMode = "REGISTRY_ONLY"
OUTBOUND_MODES: tuple[OutboundMode, ...] = (ALLOW_ANY, REGISTRY_ONLY)

PASSTHROUGH_CLUSTER = "PassthroughCluster"
"""Istio's name for the cluster that takes a request for a host outside the registry to
the host it names (ALLOW_ANY); telemetry reports it as the destination service."""
BLACKHOLE_CLUSTER = "BlackHoleCluster"
"""Istio's name for the cluster (no endpoints) that refuses such a request (REGISTRY_ONLY)."""
EGRESS_CLUSTERS = (PASSTHROUGH_CLUSTER, BLACKHOLE_CLUSTER)

MESH_CONFIG_FILE = "mesh.yaml"
"""Read from the state directory when ``--mesh-config`` names no other file."""


@dataclass(frozen=True)
class DnsResolver:
    """One DNS server (an IP literal and a UDP port) the passthrough cache asks."""

    address: str
    port: int = 53


@dataclass(frozen=True)
class MeshConfig:
    """What meshpilot takes from a meshConfig. Defaults are Istio's: ``ALLOW_ANY``, and
    no resolvers of its own (Envoy then reads the host's ``/etc/resolv.conf``)."""

    outbound_mode: OutboundMode = ALLOW_ANY
    dns_resolvers: tuple[DnsResolver, ...] = ()
    networks: MeshNetworks = NO_NETWORKS
    """Istio's ``meshNetworks`` (:mod:`meshpilot.api.mesh_networks`); none: one network."""


DEFAULT_MESH_CONFIG = MeshConfig()
"""Istio's defaults (frozen, so one object serves everyone)."""
