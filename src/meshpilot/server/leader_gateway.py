"""Which east-west gateway the proxies of this replica reach the pods through, when the
replicas run on different hosts.

Only the leader runs the local runtime's pods, on its own host's loopback addresses.
Each replica publishes its gateway (``up --listen ADDR``: ``ADDR:15443``) in its record
in the replica directory (:mod:`meshpilot.store.replicas`), beside ``leading``. A
follower whose gateway is elsewhere than the leader's is on another host: its own
proxies and the joined hosts streaming from it then reach the pods through the
*leader's* gateway, which forwards to them by SNI; the leader (and a follower on the
leader's host, sharing its gateway address) keeps its own. Every change of a record
rebuilds the mesh (``ReplicaState.announce``), so a new leader's gateway is used from
the rebuild after its record says it leads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FIELD = "east_west"
"""The record's field with the replica's gateway, ``host:port`` ("" without one)."""


def parse(endpoint: str) -> tuple[str, int] | None:
    """``host:port`` or ``[v6]:port`` as (host, port); None when it is not one."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def leader_gateway(replicas: Iterable[dict[str, Any]], identity: str, mine: str
                   ) -> tuple[str, int] | None:
    """The leading replica's gateway when another replica leads from another host (its
    gateway is not ``mine``); None when this replica leads, the leader shares this
    host's gateway, no leader is known, or it has no gateway."""
    for replica in replicas:
        if replica.get("leading") is not True or replica.get("identity") == identity:
            continue
        theirs = str(replica.get(FIELD) or "")
        if theirs and theirs != mine:
            return parse(theirs)
    return None
