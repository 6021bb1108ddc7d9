"""Which east-west gateway the proxies of this replica reach the pods through, when the
replicas run on different hosts.

Only the leader runs the local runtime's pods, on its own host's loopback addresses.
Each replica publishes its gateway (``up --listen ADDR``: ``ADDR:15443``) and which
loopback it has (:func:`loopback_identity`: the machine and its network namespace) in
its record in the replica directory (:mod:`meshpilot.store.replicas`), beside
``leading``. A follower on another loopback than the leader's cannot reach the pods: its
own proxies and the joined hosts streaming from it then reach them through the
*leader's* gateway, which forwards to them by SNI; the leader, and a follower sharing
its loopback, reach them directly (and joined hosts through their replica's own
gateway). Every change of a record rebuilds the mesh (``ReplicaState.announce``), so a
new leader's gateway is used from the rebuild after its record says it leads.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FIELD = "east_west"
"""The record's field with the replica's gateway, ``host:port`` ("" without one)."""
LOOPBACK_FIELD = "loopback"
"""The record's field with :func:`loopback_identity`."""


def loopback_identity() -> str:
    """Which loopback this process has: two replicas with the same one reach each
    other's pods directly. The machine (its ``/etc/machine-id``, else its host name) and
    the network namespace it runs in (the inode of ``/proc/self/ns/net``)."""
    try:
        machine = Path("/etc/machine-id").read_text().strip()
    except OSError:
        machine = ""
    try:
        namespace = str(os.stat("/proc/self/ns/net").st_ino)
    except OSError:
        namespace = ""
    return f"{machine or socket.gethostname()}/{namespace}"


def parse(endpoint: str) -> tuple[str, int] | None:
    """``host:port`` or ``[v6]:port`` as (host, port); None when it is not one."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def leader_gateway(replicas: Iterable[dict[str, Any]], identity: str, loopback: str
                   ) -> tuple[str, int] | None:
    """The leading replica's gateway when another replica leads from another loopback
    than this one's (``loopback``); None when this replica leads, the leader shares its
    loopback, no leader is known, or the leader has no gateway."""
    for replica in replicas:
        if replica.get("leading") is not True or replica.get("identity") == identity:
            continue
        if replica.get(LOOPBACK_FIELD) == loopback:
            return None
        return parse(str(replica.get(FIELD) or ""))
    return None
