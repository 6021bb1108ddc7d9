"""Istio's series for requests to hosts outside the registry (the outbound traffic
policy): ``PassthroughCluster`` (ALLOW_ANY) and ``BlackHoleCluster`` (REGISTRY_ONLY).

Istio reports them at the source with the cluster's name as the destination service
(``destination_service`` and ``destination_service_name``); nothing is known of a
workload or namespace there. They are counted, like every request, by the outbound
connection manager's logger under the cluster the request was routed to, with the code
the client got: a blackholed request's 502 (the listener's answer to Envoy's "no healthy
upstream", whose ``UH`` flag it keeps), not Envoy's internal 503.
"""

from __future__ import annotations

from meshpilot.api.mesh_config import EGRESS_CLUSTERS

UNKNOWN = "unknown"


def egress_destination(cluster: str) -> dict[str, str] | None:
    """The destination labels of an egress cluster; None for any other cluster."""
    if cluster not in EGRESS_CLUSTERS:
        return None
    return {
        "destination_workload": UNKNOWN,
        "destination_workload_namespace": UNKNOWN,
        "destination_app": UNKNOWN,
        "destination_version": UNKNOWN,
        "destination_canonical_service": UNKNOWN,
        "destination_canonical_revision": "latest",
        "destination_cluster": UNKNOWN,
        "destination_principal": UNKNOWN,
        "destination_service": cluster,
        "destination_service_name": cluster,
        "destination_service_namespace": UNKNOWN,
    }
