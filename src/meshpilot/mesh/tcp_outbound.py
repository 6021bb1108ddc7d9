"""How an app reaches the TCP and TLS ports of mesh services: one sidecar listener per
service port, on the pod's own address, announced in Kubernetes' service variables.

Why this shape: an app's HTTP calls name their destination in the request (the sidecar is
its HTTP proxy), but a TCP connection names nothing but an address. Istio captures every
connection with iptables and tells the destination by the service's virtual IP; a pod here
is a process with a loopback address of its own and nothing is captured. A virtual IP per
service on loopback would be shared by every pod on the machine, so two sidecars could not
both listen on it (and a connection could not say which pod's sidecar, hence which
identity and which ``sourceLabels``, it came through). So each sidecar listens on its own
pod's address, ``POD_IP:<local port>``, one port per TCP or TLS service port of the pod's
namespace, and the runtime gives the app the variables Kubernetes gives it for each
Service of its namespace when the pod starts (Kubernetes' "Environment variables" way of
finding services)::

    TCP_ECHO_SERVICE_HOST=127.10.0.7      # the pod's own address: its sidecar listens
    TCP_ECHO_SERVICE_PORT=15100           # the first TCP/TLS port of the Service
    TCP_ECHO_SERVICE_PORT_TCP=15100       # per named port

ServiceEntry hosts get the same, as Istio's sidecars capture connections to an entry's
TCP and TLS ports (its egress tasks: a MongoDB/TCP entry, TLS passthrough to an external
host on 443). Kubernetes names no variables for them, so they are named after the host as
written in the entry, dots and dashes as ``_`` and a leading ``*.`` as ``WILDCARD_``::

    API_EXAMPLE_COM_SERVICE_HOST=127.10.0.7   # ServiceEntry host api.example.com
    API_EXAMPLE_COM_SERVICE_PORT=15102
    WILDCARD_WIKIPEDIA_ORG_SERVICE_PORT_TLS=15103   # host *.wikipedia.org, port "tls"

An entry is reached from the namespaces it is exported to (``exportTo``). Its
``addresses`` are not listened on: a single address would be shared by every pod on the
machine (see above), and a connection to it, or to an address of a CIDR block, is not
captured; the app uses the variables instead.

The local ports are handed out in one walk from :data:`FIRST_PORT`, over the Services of
the namespace sorted by name and their ports by number, then the entries visible there
sorted by host and port, skipping the pod's own ports: the same Services and entries give
the same ports, and an entry never moves a Service's port. As in Kubernetes, the
variables are fixed when the pod starts; a Service or entry made later is reached by pods
started after it. HTTP ports are left to the HTTP proxy (``HTTP_PROXY``), which routes
by host name and needs none of this.

Pure: the runtime calls :func:`allocate` and :func:`service_env`, the control plane
:func:`tcp_targets`, translation reads the result from the proxy's node.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meshpilot.mesh.index import exported_to
from meshpilot.mesh.model import MeshService, MeshSnapshot, TcpOutbound
from meshpilot.mesh.protocols import is_tcp

FIRST_PORT = 15100
"""Where the local ports start: above Istio's own ports (15000-15090), as the sidecar's."""
LAST_PORT = 15999
"""The last local port: at most 900 TCP/TLS service ports per namespace get a listener."""


@dataclass(frozen=True)
class TcpTarget:
    """A TCP or TLS port of a Service, as the runtime needs it to give pods a way there."""

    namespace: str
    service: str  # the Service's name, or the entry's host as written (for its variables)
    host: str  # its FQDN (for the sidecar)
    port: int
    port_name: str = ""
    entry: bool = False  # a ServiceEntry host's port
    export_to: tuple[str, ...] = ()  # an entry's exportTo (where pods reach it)

    def reaches(self, namespace: str) -> bool:
        """Whether pods of ``namespace`` get a local port for it: a Service's own
        namespace (Kubernetes' variables), an entry's exportTo namespaces."""
        if self.entry:
            return exported_to(self.export_to, self.namespace, namespace)
        return self.namespace == namespace


_TLS = frozenset({"TLS", "HTTPS"})


def _reachable(service: MeshService, protocol: str) -> bool:
    """An opaque port a sidecar can forward: every one, but a wildcard host resolved
    NONE only on its TLS ports, where the SNI names the host to pass through to (a plain
    TCP connection names none; see :mod:`meshpilot.xds.translate.passthrough`)."""
    if not is_tcp(protocol):
        return False
    wild = service.host.startswith("*") and service.resolution == "NONE"
    return not wild or protocol in _TLS


def _targets(service: MeshService) -> list[TcpTarget]:
    entry = service.origin == "ServiceEntry"
    return [TcpTarget(service.namespace, service.name, service.host, p.port, p.name,
                      entry, service.export_to if entry else ())
            for p in service.ports if _reachable(service, p.protocol)]


def tcp_targets(snapshot: MeshSnapshot) -> tuple[TcpTarget, ...]:
    """Every opaque (TCP, TLS, HTTPS, mongo, redis, ...) port of every v1 Service and
    ServiceEntry host: Services first, sorted by namespace, name and port, then entries
    sorted by host and port."""
    out = [t for s in snapshot.services.values() for t in _targets(s)]
    return tuple(sorted(out, key=lambda t: (t.entry, t.namespace if not t.entry else "",
                                            t.service if not t.entry else t.host, t.port)))


def allocate(targets: Iterable[TcpTarget], namespace: str, reserved: Iterable[int]
             ) -> tuple[TcpOutbound, ...]:
    """The local port of each target pods of ``namespace`` reach, walking up from
    :data:`FIRST_PORT` (Services, then entries) and skipping ``reserved`` (the pod's
    container ports, the sidecar's outbound port); those past :data:`LAST_PORT` get
    none."""
    taken = set(reserved)
    ours = sorted((t for t in targets if t.reaches(namespace)),
                  key=lambda t: (t.entry, t.host if t.entry else t.service, t.port))
    out: list[TcpOutbound] = []
    port = FIRST_PORT
    for target in ours:
        while port in taken:
            port += 1
        if port > LAST_PORT:
            break
        out.append(TcpOutbound(target.host, target.port, port))
        port += 1
    return tuple(out)


def _env_name(name: str) -> str:
    if name.startswith("*."):
        name = f"wildcard_{name[2:]}"
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def service_env(targets: Iterable[TcpTarget], outbound: Iterable[TcpOutbound], ip: str
                ) -> dict[str, str]:
    """Kubernetes' service variables for the targets that have a local port:
    ``{SVC}_SERVICE_HOST`` (``ip``), ``{SVC}_SERVICE_PORT`` (its first such port),
    ``{SVC}_SERVICE_PORT_{PORT NAME}`` per named port, and the Docker-link style
    ``{SVC}_PORT=tcp://ip:port`` that Kubernetes sets too."""
    local: Mapping[tuple[str, int], int] = {(o.host, o.port): o.local_port for o in outbound}
    env: dict[str, str] = {}
    for target in targets:
        port = local.get((target.host, target.port))
        if port is None:
            continue
        prefix = _env_name(target.service)
        if f"{prefix}_SERVICE_HOST" not in env:
            env[f"{prefix}_SERVICE_HOST"] = ip
            env[f"{prefix}_SERVICE_PORT"] = str(port)
            env[f"{prefix}_PORT"] = f"tcp://{ip}:{port}"
        if target.port_name:
            env[f"{prefix}_SERVICE_PORT_{_env_name(target.port_name)}"] = str(port)
    return env
