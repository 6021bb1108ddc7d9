"""Istio's series for requests to hosts outside the registry (the outbound traffic
policy): ``PassthroughCluster`` (ALLOW_ANY) and ``BlackHoleCluster`` (REGISTRY_ONLY).

Istio reports them at the source with the cluster's name as the destination service
(``destination_service`` and ``destination_service_name``); nothing is known of a
workload or namespace there. Envoy counts a BlackHoleCluster request as the 503 it made
(no healthy upstream); the client got the 502 the outbound listener answers instead, so
that is the code reported, as Istio reports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from meshpilot.api.mesh_config import BLACKHOLE_CLUSTER, EGRESS_CLUSTERS

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


def as_answered(cluster: str, points: Iterable[Any]) -> Iterator[Any]:
    """``points`` of ``cluster`` with the response code the client got: BlackHoleCluster's
    503 is the 502 the listener answers; every other cluster's pass unchanged."""
    if cluster != BLACKHOLE_CLUSTER:
        yield from points
        return
    for point in points:
        labels = tuple((n, "502" if n == "response_code" and v == "503" else v)
                       for n, v in point.labels)
        yield dataclasses.replace(point, labels=labels)
