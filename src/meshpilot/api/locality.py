"""The labels Istio reads a workload's locality from (Kubernetes' topology labels, Istio's
subzone and ``istio-locality``), named once for the layers that read them: the mesh view
(:mod:`meshpilot.mesh.locality`) and validation (``failoverPriority`` checks)."""

from __future__ import annotations

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"
LOCALITY_LABEL = "istio-locality"
TOPOLOGY_LABELS = (REGION_LABEL, ZONE_LABEL, SUBZONE_LABEL)
