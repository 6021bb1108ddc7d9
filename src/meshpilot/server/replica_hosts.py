"""Which host each control-plane replica is on, and where other hosts reach its pods.

Only the leader runs the local runtime's pods, on its own host's loopback addresses.
Each replica publishes, in its record in the replica directory
(:mod:`meshpilot.store.replicas`), its east-west gateway (``up --listen ADDR``:
``ADDR:15443``) and which loopback it has (:func:`loopback_identity`: the machine and
its network namespace). A replica on the same loopback reaches another's pods directly;
one on another loopback cannot, so the pods it takes from that replica
(:mod:`meshpilot.server.shared_endpoints`) carry that replica's gateway
(:func:`host_gateway`), and every proxy it programs, its own and those of the hosts that
joined through it, reaches them through that gateway, which passes mutual TLS through to
them by SNI (``xds.translate.east_west``). A leader that dies with its host alive leaves
its pods and gateway running: its pods, kept as endpoints during the hand-over, are still
reached through its gateway until the new leader's own are ready.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

GATEWAY_FIELD = "east_west"
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


def host_gateway(replica: dict[str, Any], loopback: str) -> str:
    """The gateway through which this replica (on ``loopback``) reaches ``replica``'s
    pods: its gateway when it is on another loopback, "" when they are reached directly
    (the same loopback, or a record that does not say which it has)."""
    theirs = replica.get(LOOPBACK_FIELD)
    if not theirs or theirs == loopback:
        return ""
    return str(replica.get(GATEWAY_FIELD) or "")
