"""Where a workload or a proxy runs: its locality, read the way Istio reads it.

A locality is ``region/zone/subzone`` (any part may be empty; an empty string is "no
locality"). Istio takes a pod's from its ``istio-locality`` label (``region.zone.subzone``,
dots because ``/`` is not allowed in a label value) when present, else from the
Kubernetes topology labels of its node (``topology.kubernetes.io/region``,
``topology.kubernetes.io/zone``, ``topology.istio.io/subzone``). meshpilot's pods have no
node, so the same labels are read from the pod itself. A WorkloadEntry or a ServiceEntry
endpoint names its ``locality`` in its spec; a proxy's arrives in its Envoy node
(``node.locality``), or is read from its labels like a pod's.

The comparisons follow Istio's ``LbPriority`` and ``LocalityMatch``: how far an endpoint
is from the caller (0 the same subzone ... 3 another region), and whether a locality is
covered by a rule's ``region/zone/subzone`` pattern (``*`` or an absent part covers all).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from meshpilot.api.locality import LOCALITY_LABEL, TOPOLOGY_LABELS


class Locality(NamedTuple):
    region: str = ""
    zone: str = ""
    subzone: str = ""

    def __str__(self) -> str:
        return "/".join(self).rstrip("/")


def parse(text: str) -> Locality:
    """``region/zone/subzone`` (parts may be missing) as a :class:`Locality`."""
    parts = (text or "").split("/", 2)
    return Locality(*(p for p in parts), *("",) * (3 - len(parts)))


def from_labels(labels: Mapping[str, str]) -> str:
    """A pod's locality from its labels: ``istio-locality`` first, else the topology
    labels; "" when it has none."""
    label = labels.get(LOCALITY_LABEL, "")
    if label:
        return str(parse(label.replace(".", "/")))
    return str(Locality(*(labels.get(k, "") for k in TOPOLOGY_LABELS)))


def with_topology(labels: Mapping[str, str], locality: str) -> dict[str, str]:
    """``labels`` with the topology labels of ``locality`` filled in where missing, as
    Istio labels its endpoints and proxies (so ``failoverPriority`` can name them)."""
    out = dict(labels)
    for key, value in zip(TOPOLOGY_LABELS, parse(locality), strict=True):
        if value and key not in out:
            out[key] = value
    return out


def priority(caller: Locality, endpoint: Locality) -> int:
    """How far ``endpoint`` is from ``caller``: 0 same region, zone and subzone; 1 same
    region and zone; 2 same region; 3 elsewhere (Istio's ``LbPriority``)."""
    if caller.region != endpoint.region:
        return 3
    if caller.zone != endpoint.zone:
        return 2
    return 0 if caller.subzone == endpoint.subzone else 1


def covered(locality: Locality, pattern: str) -> bool:
    """Whether ``pattern`` (``region``, ``region/zone``, ``region/*``, ``*``, ...) covers
    ``locality``: a ``*`` part or a part left out covers any value."""
    region, zone, subzone = parse(pattern)
    return (region == "*" or region == locality.region) \
        and zone in ("*", "", locality.zone) and subzone in ("*", "", locality.subzone)


def of_workload(locality: str, labels: Mapping[str, str]) -> str:
    """A workload's or proxy's locality: the one its spec or Envoy node names, else the
    one its labels give."""
    return str(parse(locality)) if locality else from_labels(labels)
