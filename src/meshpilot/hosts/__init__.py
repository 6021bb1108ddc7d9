"""The node agent another host runs to join the mesh (``meshpilot host join``).

It makes the host's key (which never leaves it) and a CSR, joins a WorkloadGroup with a
single-use token, writes the certificate it is given, runs an Envoy sidecar for the
user's app on that host, and reports the group's readiness probe to the control plane,
which keeps the host's WorkloadEntry healthy while the reports come (see
:mod:`meshpilot.server.host_registry` for the other side).
"""

from meshpilot.hosts.agent import AgentOptions, HostAgent

__all__ = ["AgentOptions", "HostAgent"]
