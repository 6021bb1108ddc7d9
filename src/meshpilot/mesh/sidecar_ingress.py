"""A Sidecar's ``ingress`` listeners and ``inboundConnectionPool`` on the workloads it
selects: which ports their sidecars listen on, and where each hands its traffic.

Without a Sidecar (or with one that has no ingress), a sidecar listens on each declared
container port and hands the traffic to the app at ``POD_IP:app_port``, the port the
runtime moved the app to (:mod:`meshpilot.mesh.model`). An ingress listener on port N
replaces that (or adds N when no container declares it), as Istio's does:

- it listens at ``POD_IP:N`` and speaks ``port.protocol`` (HTTP, or TCP for the opaque
  protocols; after the user's ``tls`` is terminated HTTPS is HTTP and TLS is TCP, as Istio
  reads them);
- it forwards to ``defaultEndpoint``. A pod here has no network namespace: its own
  loopback is its ``POD_IP``, so ``127.0.0.1:P`` and ``0.0.0.0:P`` (and the IPv6 and
  ``:P`` forms) both mean the app's port P on the pod's address. When a container
  declares P, the runtime moved the app's P to its app port (the app reads it in
  ``PORT``), so the listener forwards there; otherwise to ``POD_IP:P``, where the app
  listens by its own configuration. ``unix:///path`` forwards to that socket. With no
  defaultEndpoint the traffic goes to port N itself, as Istio's original-destination
  passthrough does, which here means the app's declared port N;
- a listener whose traffic would come back to the sidecar itself (its target is one of
  the sidecar's own ports: no defaultEndpoint on an undeclared port) is left out, and
  its port gets no endpoints: nothing would answer there;
- the Service endpoints follow: a Service whose ``targetPort`` is N lands on
  ``POD_IP:N`` of each selected pod, as a Kubernetes Service does on any pod port.

Container ports no ingress listener names keep their listeners. In Istio they would be
served by the inbound passthrough chain, which enforces the same PeerAuthentication and
AuthorizationPolicy; here that is the port's own listener.

``connectionPool`` of a listener, else the Sidecar's ``inboundConnectionPool``, bounds
the connections and requests from the sidecar to the app: circuit breakers on the
inbound cluster of the port, as Istio applies them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from meshpilot.api.credentials import Secret
from meshpilot.api.networking import (
    UNIX_PREFIX,
    IstioIngressListener,
    Sidecar,
)
from meshpilot.mesh.index import pick_sidecar
from meshpilot.mesh.model import (
    InboundPort,
    InboundSetting,
    MeshSnapshot,
    Named,
    ProxyNode,
    WorkloadInstance,
)
from meshpilot.mesh.protocols import port_protocol

_AFTER_TLS = MappingProxyType({"HTTPS": "HTTP", "TLS": "TCP"})
"""What a protocol is once the sidecar has terminated the user's TLS (Istio's
``AfterTLSTermination``)."""


@dataclass(frozen=True)
class Inbound:
    """A workload's inbound ports under its Sidecar, and what the Sidecar says of them."""

    ports: tuple[InboundPort, ...]
    settings: tuple[InboundSetting, ...]


def has_effect(sidecars: Iterable[Named[Sidecar]]) -> bool:
    """Whether any Sidecar changes an inbound side (a quick test before the per-proxy
    work: most meshes have none)."""
    return any(s.obj.spec.ingress or s.obj.spec.inbound_connection_pool for s in sidecars)


def inbound_of(sidecar: Sidecar, declared: Sequence[InboundPort],
               credentials: Mapping[str, Secret] | None = None) -> Inbound:
    """The inbound ports of a workload whose containers declare ``declared``, under
    ``sidecar`` (see the module); ``credentials``: the Secrets of the workload's
    namespace by name, for ``tls.credentialName``."""
    spec = sidecar.spec
    by_number = {p.container_port: p for p in declared}
    taken = set(by_number) | {listener.port.number for listener in spec.ingress}
    ports: dict[int, InboundPort] = {}
    settings: dict[int, InboundSetting] = {}
    for listener in spec.ingress:
        found = _ingress_port(listener, by_number, taken)
        if found is None:
            continue
        port, unix = found
        ports[port.container_port] = port
        name = listener.tls.credential_name if listener.tls is not None else None
        settings[port.container_port] = InboundSetting(
            port.container_port, unix_path=unix, tls=listener.tls,
            pool=listener.connection_pool or spec.inbound_connection_pool, from_ingress=True,
            credential=(credentials or {}).get(name) if name else None)
    named = {listener.port.number for listener in spec.ingress}
    for p in declared:
        if p.container_port in named:
            continue
        ports[p.container_port] = p
        if spec.inbound_connection_pool is not None:
            settings[p.container_port] = InboundSetting(
                p.container_port, pool=spec.inbound_connection_pool)
    return Inbound(tuple(ports[n] for n in sorted(ports)),
                   tuple(settings[n] for n in sorted(settings)))


def _ingress_port(listener: IstioIngressListener, declared: dict[int, InboundPort],
                  taken: set[int]) -> tuple[InboundPort, str] | None:
    """The inbound port of one ingress listener and its unix socket path (or ""); None
    when its traffic would come back to the sidecar."""
    number = listener.port.number
    own = declared.get(number)
    protocol = _protocol(listener, own)
    name = own.name if own is not None else listener.port.name
    endpoint = listener.default_endpoint or ""
    if endpoint.startswith(UNIX_PREFIX):
        return InboundPort(number, 0, name, protocol), endpoint.removeprefix(UNIX_PREFIX)
    wanted = int(endpoint.rpartition(":")[2]) if endpoint else number
    app = declared.get(wanted)
    if app is not None:
        return InboundPort(number, app.app_port, name, protocol), ""
    if wanted in taken:
        return None  # the sidecar listens there itself: a loop, nothing would answer
    return InboundPort(number, wanted, name, protocol), ""


def _protocol(listener: IstioIngressListener, own: InboundPort | None) -> str:
    """The listener's ``port.protocol``, else its name's prefix, else the declared
    container port's protocol; after the user's TLS is terminated, what is inside."""
    given = listener.port.protocol
    if given:
        protocol = port_protocol(given.lower())
    elif listener.port.name:
        protocol = port_protocol(listener.port.name)
    else:
        protocol = own.protocol if own is not None else "HTTP"
    if listener.tls is not None:
        return _AFTER_TLS.get(protocol, protocol)
    return protocol


def applied(snapshot: MeshSnapshot, node: ProxyNode) -> ProxyNode:
    """``node`` (a pod's sidecar) with the inbound ports and settings its Sidecar gives;
    ``node`` itself when no Sidecar changes its inbound side."""
    if node.kind != "sidecar":
        return node
    found = pick_sidecar(snapshot.sidecars, node.namespace, node.labels)
    if found is None or not has_effect((found,)):
        return node
    wanted = {x.tls.credential_name for x in found.obj.spec.ingress
              if x.tls is not None and x.tls.credential_name}
    credentials = {s.name: s.obj for s in snapshot.secrets  # only those it names
                   if s.namespace == node.namespace and s.name in wanted} if wanted else {}
    inbound = inbound_of(found.obj, node.inbound, credentials)
    return replace(node, inbound=inbound.ports, inbound_settings=inbound.settings)


def instances_under(sidecars: Sequence[Named[Sidecar]],
                    instances: Iterable[WorkloadInstance]) -> list[WorkloadInstance]:
    """The workloads with the inbound ports their Sidecars give them (pods with a sidecar
    only): what the Service endpoints are made from."""
    out = []
    for w in instances:
        found = pick_sidecar(sidecars, w.namespace, w.labels) if w.has_sidecar else None
        if found is not None and found.obj.spec.ingress:
            w = replace(w, ports=inbound_of(found.obj, w.ports).ports)
        out.append(w)
    return out


def setting(node: ProxyNode, container_port: int) -> InboundSetting | None:
    """What the node's Sidecar says of one of its inbound ports, if anything."""
    return next((s for s in node.inbound_settings if s.container_port == container_port),
                None)
