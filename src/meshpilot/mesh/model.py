"""The mesh view: one immutable snapshot of everything the proxies must be told.

Built from the config store (Services, ServiceEntries, WorkloadEntries, Istio rules) and
the live endpoints (ready pods from the local runtime, WorkloadEntries). The xDS layer
turns (snapshot, proxy) into Envoy resources with pure functions, so everything in here
is plain, frozen data: no handles, no I/O.

Addressing (the local runtime's "pod network"): every pod gets its own loopback address
``POD_IP`` in 127.0.0.0/8. Its sidecar's inbound listener binds ``POD_IP:containerPort``
(so endpoints read like Kubernetes pod endpoints, ``127.10.0.7:8080``) and hands requests
to the app, which listens on ``POD_IP:app_port`` (a port the runtime assigned, given to
the app as ``PORT``). The app reaches other services through its sidecar's outbound HTTP
proxy listener at ``POD_IP:OUTBOUND_PROXY_PORT`` (``HTTP_PROXY`` for the app), and the TCP
and TLS ports of the Services of its namespace through one sidecar listener each at
``POD_IP:<local port>`` (:class:`TcpOutbound`; the app finds them in Kubernetes' service
variables, see :mod:`meshpilot.mesh.tcp_outbound`).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from meshpilot.api.credentials import Secret
from meshpilot.api.envoy_filter import EnvoyFilter
from meshpilot.api.flagger import Canary
from meshpilot.api.mesh_config import DEFAULT_MESH_CONFIG, MeshConfig
from meshpilot.api.networking import (
    ConnectionPoolSettings,
    DestinationRule,
    Gateway,
    ServerTLSSettings,
    ServiceEntry,
    Sidecar,
    VirtualService,
)
from meshpilot.api.request_authentication import RequestAuthentication
from meshpilot.api.security import AuthorizationPolicy, PeerAuthentication

OUTBOUND_PROXY_PORT = 15001
"""The sidecar's outbound HTTP proxy listener port on POD_IP (Istio's outbound port)."""

T = TypeVar("T")

Protocol = Literal["HTTP", "HTTP2", "GRPC", "TCP", "HTTPS", "TLS", "UNKNOWN"]


@dataclass(frozen=True)
class ServicePort:
    """One port of a service, as clients address it (``myapp:8080``)."""

    port: int
    name: str = ""
    protocol: Protocol = "HTTP"  # from the port name prefix / appProtocol, as Istio does
    target_port: int | str | None = None  # container port number or name (Service only)


@dataclass(frozen=True)
class MeshService:
    """A host clients can call: a v1 Service or a ServiceEntry host."""

    host: str  # FQDN: myapp.default.svc.cluster.local, or api.example.com
    name: str
    namespace: str
    ports: tuple[ServicePort, ...]
    origin: Literal["Service", "ServiceEntry"] = "Service"
    selector: Mapping[str, str] | None = None  # Service selector / SE workloadSelector
    location: Literal["MESH_INTERNAL", "MESH_EXTERNAL"] = "MESH_INTERNAL"
    # How Envoy finds endpoints: EDS (pods/WorkloadEntries we list), DNS (resolve the
    # host or endpoint addresses), STATIC (addresses listed in the ServiceEntry).
    resolution: Literal["EDS", "DNS", "DNS_ROUND_ROBIN", "STATIC", "NONE"] = "EDS"
    short_names: tuple[str, ...] = ()  # other names users type: myapp, myapp.default, ...
    export_to: tuple[str, ...] = ()  # Istio's exportTo (empty: every namespace)

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.port == number), None)


@dataclass(frozen=True)
class Endpoint:
    """Where one service port of one workload receives traffic."""

    host: str  # the service FQDN this endpoint belongs to
    service_port: int  # the service port it serves (8080 in outbound|8080||host)
    address: str  # POD_IP, a WorkloadEntry address, or a ServiceEntry endpoint address
    port: int  # the port at that address (the pod's inbound listener = containerPort)
    labels: Mapping[str, str] = field(default_factory=dict)
    workload: str = ""  # Istio's workload: the pod's Deployment, or the WorkloadEntry
    namespace: str = "default"
    ready: bool = True
    weight: int = 1
    has_sidecar: bool = False  # a proxy of the mesh receives its traffic (mTLS possible)
    service_account: str = ""  # its identity's service account (with a sidecar)
    locality: str = ""  # region/zone/subzone (see meshpilot.mesh.locality); "": none
    network: str = ""  # its named network (meshpilot.mesh.networks); "": every network's
    host_gateway: str = ""  # host:port of its host's east-west gateway, when that host is
    # another control-plane replica's (its pods are on that host's loopback)


@dataclass(frozen=True)
class InboundPort:
    """A port a sidecar accepts traffic on and the app port it hands it to."""

    container_port: int  # the inbound listener binds POD_IP:container_port
    app_port: int  # the app listens on POD_IP:app_port
    name: str = ""
    protocol: Protocol = "HTTP"


@dataclass(frozen=True)
class InboundSetting:
    """What a Sidecar says about one inbound port of a workload's sidecar
    (:mod:`meshpilot.mesh.sidecar_ingress`)."""

    container_port: int
    unix_path: str = ""
    """Set: the port forwards to this unix domain socket, not to ``POD_IP:app_port``."""
    tls: ServerTLSSettings | None = None
    """The TLS the listener terminates with the user's certificate (Sidecar ingress
    ``tls``); applied where the port's mutual TLS mode is DISABLE, as in Istio."""
    pool: ConnectionPoolSettings | None = None
    """Circuit breakers between the sidecar and the app."""
    from_ingress: bool = False
    credential: Secret | None = field(default=None, repr=False)
    """The Secret ``tls.credentialName`` names in the workload's namespace, if it exists
    (its values are credentials: never printed)."""


@dataclass(frozen=True)
class TcpOutbound:
    """A TCP or TLS service port a sidecar listens for on its app's behalf: the app
    connects to ``POD_IP:local_port`` and the sidecar forwards the connection to
    ``host:port`` by the mesh's ``tcp`` / ``tls`` routes."""

    host: str  # the service's FQDN
    port: int  # the service port
    local_port: int  # where the sidecar listens on the pod's address


@dataclass(frozen=True)
class WorkloadInstance:
    """A running workload that can be a service endpoint: a pod or a WorkloadEntry.

    Pods have a sidecar, so traffic goes to their inbound listeners
    (``ip:container_port``); a WorkloadEntry is a process the user runs, reached
    directly at ``ip`` on the ports it names.
    """

    name: str  # the pod's or the WorkloadEntry's name
    namespace: str
    ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[InboundPort, ...] = ()  # pods: declared container ports
    named_ports: Mapping[str, int] = field(default_factory=dict)  # WorkloadEntry.ports
    ready: bool = True
    has_sidecar: bool = True
    weight: int = 1
    workload: str = ""
    """Istio's workload name: the pod's Deployment; empty means ``name`` (a WorkloadEntry
    or ServiceEntry endpoint is its own workload)."""
    service_account: str = "default"  # a pod's identity: spiffe://<domain>/ns/<ns>/sa/<this>
    locality: str = ""
    """region/zone/subzone as the workload's spec names it (a WorkloadEntry's, a
    ServiceEntry endpoint's); empty: read from its labels, as a pod's is."""
    network: str = ""
    """The named network it is on, resolved by :func:`meshpilot.mesh.networks.place` when
    the mesh has named networks; empty: on every network (Istio's unset network)."""
    host_gateway: str = ""
    """A pod another control-plane replica runs on another host: ``host:port`` of that
    host's east-west gateway, through which it is reached (empty: this host's own)."""
    host_entry: tuple[str, str] | None = None
    """A pod on a joined host: (namespace, name) of that host's WorkloadEntry, whose
    network it is on unless its own label names one (:func:`meshpilot.mesh.networks.
    place_all`)."""

    @property
    def workload_name(self) -> str:
        return self.workload or self.name


@dataclass(frozen=True)
class ProxyNode:
    """An Envoy the control plane programs, as it introduced itself (node id + metadata).

    ``kind``: ``sidecar`` (a pod's sidecar), ``client`` (the mesh proxy: a sidecar
    with no workload behind it, for curl -x), ``gateway`` (the ingress gateway).
    """

    id: str
    kind: Literal["sidecar", "client", "gateway"]
    namespace: str
    ip: str  # address its listeners bind to
    workload: str = ""  # Istio's workload: the pod's Deployment, or the built-in proxy's name
    name: str = ""  # the proxy's own name: its pod's (sidecar), or the built-in proxy's
    service_account: str = "default"  # its identity: spiffe://<domain>/ns/<ns>/sa/<this>
    labels: Mapping[str, str] = field(default_factory=dict)
    inbound: tuple[InboundPort, ...] = ()
    outbound_port: int = OUTBOUND_PROXY_PORT  # the HTTP proxy listener (sidecar, client)
    outbound_ip: str = ""
    """Where the HTTP proxy listener binds, when not ``ip``: a joined host's sidecar keeps
    it on loopback, so its app reaches the mesh through it and its network does not."""
    app_ip: str = ""
    """Where the app behind the sidecar listens, when not ``ip``: a joined host's pod
    app binds a loopback address, so only its own sidecar (with mutual TLS and the
    authorization policies in front) reaches it, never the network."""
    # Gateway only: Gateway server port (80) → the real port it listens on here.
    gateway_ports: Mapping[int, int] = field(default_factory=dict)
    tcp_outbound: tuple[TcpOutbound, ...] = ()
    """Sidecars: the TCP and TLS service ports it listens for (fixed when its pod starts,
    as Kubernetes' service variables are)."""
    access_log: str = ""
    """The file its listeners write Istio-format access log lines to, chosen by whoever
    runs the proxy (a path on its host, in the proxy's run directory); empty: no access
    log (``meshpilot up --access-log off``). It arrives with the node, so translation
    stays a function of its inputs."""
    locality: str = ""
    """region/zone/subzone from the Envoy node's ``locality`` (its bootstrap); empty: read
    from its labels as a pod's is (:func:`meshpilot.mesh.locality.of_proxy`)."""
    via_gateway: tuple[str, int] | None = None
    """For a proxy on another network than the control-plane host's (a joined host's
    sidecar): the east-west gateway through which it reaches that host's pods
    (``xds.translate.east_west``). Set by the control plane, never from the node's
    metadata."""
    network: str = ""
    """The named network it is on (:func:`meshpilot.mesh.networks.proxy_network`): an
    endpoint on another one is reached through that network's gateway. Set by the
    control plane, never from the node's metadata."""
    report_failures: bool = False
    """Whether its inbound listeners stream failed requests to the control plane: set by
    the xDS build from the snapshot for the sidecars of a Canary's target workload
    (``xds.translate.failure_reports``), never from the node's metadata."""
    inbound_settings: tuple[InboundSetting, ...] = ()
    """What its Sidecar says of its inbound ports (an ingress listener's socket and TLS,
    connection pools): set by the xDS build from the snapshot's Sidecars along with
    ``inbound`` (:func:`meshpilot.mesh.sidecar_ingress.applied`), never from the node's
    metadata."""


@dataclass(frozen=True)
class Named(Generic[T]):
    """A config object with its identity; ``obj`` is the typed model."""

    namespace: str
    name: str
    obj: T


@dataclass(frozen=True)
class MeshSnapshot:
    """Everything the xDS build needs, at one store revision."""

    version: int
    services: Mapping[str, MeshService]  # by FQDN host
    endpoints: Mapping[str, tuple[Endpoint, ...]]  # by FQDN host, every port
    virtual_services: tuple[Named[VirtualService], ...] = ()
    destination_rules: tuple[Named[DestinationRule], ...] = ()
    gateways: tuple[Named[Gateway], ...] = ()
    service_entries: tuple[Named[ServiceEntry], ...] = ()
    peer_authentications: tuple[Named[PeerAuthentication], ...] = ()
    authorization_policies: tuple[Named[AuthorizationPolicy], ...] = ()
    canaries: tuple[Named[Canary], ...] = ()
    request_authentications: tuple[Named[RequestAuthentication], ...] = ()
    sidecars: tuple[Named[Sidecar], ...] = ()
    envoy_filters: tuple[Named[EnvoyFilter], ...] = ()
    """Patches to the generated config of the proxies each selects (applied last, see
    :mod:`meshpilot.xds.translate.envoy_filter`)."""
    secrets: tuple[Named[Secret], ...] = field(default=(), repr=False)
    """Every stored v1 Secret: a gateway serves the certificate a Gateway server names by
    ``credentialName`` from a Secret in the gateway's own namespace (Istio's rule). Their
    values are credentials: nothing that logs or describes a snapshot may print them."""
    trust_domain: str = "cluster.local"  # of the workloads' SPIFFE identities
    mesh_config: MeshConfig = DEFAULT_MESH_CONFIG
    """The mesh config ``up`` was given: what a request for a host outside the registry
    gets (:mod:`meshpilot.xds.translate.egress`)."""
    entry_networks: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """(namespace, name) of each WorkloadEntry a joined host registered → its network
    (empty without named networks): the network of that host's sidecar."""
    sidecar_ports: frozenset[int] = frozenset()
    """The HTTP container ports of the workloads with a sidecar: every sidecar gets the
    inbound route configurations of all of them, so they are one shared set."""


def same_objects(a: Sequence[object], b: Sequence[object]) -> bool:
    """Element by element the very same objects. The snapshot builder hands back the
    objects of what did not change, so this is how "unchanged" is told downstream:
    without comparing any content."""
    return a is b or (len(a) == len(b) and all(map(operator.is_, a, b)))


def node_to_metadata(node: ProxyNode) -> dict[str, object]:
    """The ProxyNode as Envoy node metadata (a JSON object), read back by the xDS server."""
    return {
        "MESHPILOT_KIND": node.kind,
        "NAMESPACE": node.namespace,
        "INSTANCE_IP": node.ip,
        "NAME": node.name,
        "WORKLOAD_NAME": node.workload,
        "SERVICE_ACCOUNT": node.service_account,
        "LABELS": dict(node.labels),
        "INBOUND": [
            {"containerPort": p.container_port, "appPort": p.app_port, "name": p.name,
             "protocol": p.protocol}
            for p in node.inbound
        ],
        "OUTBOUND_PORT": node.outbound_port,
        "OUTBOUND_IP": node.outbound_ip,
        "APP_IP": node.app_ip,
        "GATEWAY_PORTS": {str(k): v for k, v in node.gateway_ports.items()},
        "ACCESS_LOG_FILE": node.access_log,
        "TCP_OUTBOUND": [{"host": t.host, "port": t.port, "localPort": t.local_port}
                         for t in node.tcp_outbound],
    }


def node_from_metadata(node_id: str, meta: Mapping[str, object]) -> ProxyNode:
    """Inverse of :func:`node_to_metadata`; tolerant of missing keys (defaults apply)."""

    def _int(value: object, default: int = 0) -> int:
        try:
            return int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return default

    inbound = tuple(
        InboundPort(
            container_port=_int(p.get("containerPort")),
            app_port=_int(p.get("appPort")),
            name=str(p.get("name", "")),
            protocol=str(p.get("protocol", "HTTP")),  # type: ignore[arg-type]
        )
        for p in (meta.get("INBOUND") or [])  # type: ignore[union-attr]
        if isinstance(p, Mapping)
    )
    tcp_outbound = tuple(
        TcpOutbound(host=str(t.get("host", "")), port=_int(t.get("port")),
                    local_port=_int(t.get("localPort")))
        for t in (meta.get("TCP_OUTBOUND") or [])  # type: ignore[union-attr]
        if isinstance(t, Mapping)
    )
    gateway_ports = meta.get("GATEWAY_PORTS") or {}
    labels = meta.get("LABELS") or {}
    return ProxyNode(
        id=node_id,
        kind=str(meta.get("MESHPILOT_KIND", "sidecar")),  # type: ignore[arg-type]
        namespace=str(meta.get("NAMESPACE", "default")),
        ip=str(meta.get("INSTANCE_IP", "127.0.0.1")),
        workload=str(meta.get("WORKLOAD_NAME", "")),
        name=str(meta.get("NAME", "")),
        service_account=str(meta.get("SERVICE_ACCOUNT") or "default"),
        labels={str(k): str(v) for k, v in labels.items()},  # type: ignore[union-attr]
        inbound=inbound,
        outbound_port=_int(meta.get("OUTBOUND_PORT"), OUTBOUND_PROXY_PORT),
        outbound_ip=str(meta.get("OUTBOUND_IP") or ""),
        app_ip=str(meta.get("APP_IP") or ""),
        gateway_ports={
            _int(k): _int(v) for k, v in gateway_ports.items()  # type: ignore[union-attr]
        },
        access_log=str(meta.get("ACCESS_LOG_FILE") or ""),
        tcp_outbound=tcp_outbound,
    )
