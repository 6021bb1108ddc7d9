"""Fold stored config and live workloads into one MeshSnapshot (:class:`SnapshotBuilder`)."""

from __future__ import annotations

import copy
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import ValidationError

from meshpilot.api.base import Resource
from meshpilot.api.credentials import Secret
from meshpilot.api.envoy_filter import EnvoyFilter
from meshpilot.api.flagger import Canary
from meshpilot.api.hosts import fqdn, service_fqdn
from meshpilot.api.identity import ObjectKey
from meshpilot.api.kubernetes import Service
from meshpilot.api.mesh_config import MeshConfig
from meshpilot.api.networking import (
    DestinationRule,
    Gateway,
    ServiceEntry,
    Sidecar,
    VirtualService,
    WorkloadEntry,
)
from meshpilot.api.request_authentication import RequestAuthentication
from meshpilot.api.security import AuthorizationPolicy, PeerAuthentication
from meshpilot.api.workload_group import AUTO_REGISTRATION_ANNOTATION
from meshpilot.mesh import index, locality, sidecar_ingress
from meshpilot.mesh.index import SnapshotIndex
from meshpilot.mesh.model import (
    Endpoint,
    InboundPort,
    MeshService,
    MeshSnapshot,
    Named,
    ServicePort,
    WorkloadInstance,
    same_objects,
)
from meshpilot.mesh.networks import of_entries, place_all
from meshpilot.mesh.protocols import is_tcp, port_protocol

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Resource)

_Parsed = dict[ObjectKey, tuple[dict[str, Any], Named[Any], dict[str, Any]]]
"""key -> (a private copy of the body, Named, the body given; read-only, as the store
mirror's bodies are)."""
_ServiceBuild = tuple[Named[Service], tuple[WorkloadInstance, ...], MeshService,
                      tuple[Endpoint, ...]]
"""A Service's parsed object, members, MeshService and endpoints, as last built."""


def same_stored_body(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Stored objects carry the store's resourceVersion, bumped on every write: equal
    versions are equal bodies, with no need to compare them field by field."""
    if old is new:
        return True
    old_rv = (old.get("metadata") or {}).get("resourceVersion")
    new_rv = (new.get("metadata") or {}).get("resourceVersion")
    if old_rv is not None and new_rv is not None:
        return bool(old_rv == new_rv)
    return old == new


def _selects(selector: dict[str, str] | None, labels: dict[str, str] | Any) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


class _Namespace:
    """The workloads of one namespace, indexed by (label, value) for selector look-ups."""

    def __init__(self) -> None:
        self.workloads: list[WorkloadInstance] = []
        self.by_label: dict[tuple[str, str], list[int]] = {}

    def add(self, w: WorkloadInstance) -> None:
        for item in w.labels.items():
            self.by_label.setdefault(item, []).append(len(self.workloads))
        self.workloads.append(w)


def _by_namespace(instances: Iterable[WorkloadInstance]) -> dict[str, _Namespace]:
    out: dict[str, _Namespace] = {}
    for w in instances:
        ns = out.get(w.namespace)
        if ns is None:
            ns = out[w.namespace] = _Namespace()
        ns.add(w)
    return out


def _selected(
    by_ns: dict[str, _Namespace], namespace: str, selector: dict[str, str] | None
) -> list[WorkloadInstance]:
    """Workloads of ``namespace`` whose labels include ``selector`` (none if it is empty),
    in their original order: the rarest selector label narrows, the rest are checked."""
    ns = by_ns.get(namespace)
    if ns is None or not selector:
        return []
    candidates = min((ns.by_label.get(item, []) for item in selector.items()), key=len)
    return [w for i in candidates if _selects(selector, (w := ns.workloads[i]).labels)]


def _by_kind(objects: Iterable[tuple[ObjectKey, dict[str, Any]]]
             ) -> dict[str, list[tuple[ObjectKey, dict[str, Any]]]]:
    out: dict[str, list[tuple[ObjectKey, dict[str, Any]]]] = {}
    for key, body in objects:
        out.setdefault(key.kind, []).append((key, body))
    return out


def _entry_instance(entry: Named[WorkloadEntry]) -> WorkloadInstance:
    """A hand-written entry is a process reached directly; one a joined host registered
    (Istio's auto-registration) has a sidecar of the mesh listening on its ports, reached
    over mTLS as its service account, and is ready while its ``Healthy`` condition (which
    the control plane keeps from the host's reports) is True."""
    spec = entry.obj.spec
    if entry.obj.metadata.annotations.get(AUTO_REGISTRATION_ANNOTATION):
        return WorkloadInstance(
            name=entry.name, namespace=entry.namespace, ip=spec.address or "",
            labels=dict(spec.labels), weight=spec.weight or 1, ready=_healthy(entry.obj),
            ports=tuple(InboundPort(container_port=port, app_port=port, name=name,
                                    protocol=port_protocol(name))
                        for name, port in sorted(spec.ports.items())),
            service_account=spec.service_account or "default", locality=spec.locality or "",
            network=spec.network or "")
    return WorkloadInstance(
        name=entry.name, namespace=entry.namespace, ip=spec.address or "127.0.0.1",
        labels=dict(spec.labels), named_ports=dict(spec.ports), has_sidecar=False,
        weight=spec.weight or 1, locality=spec.locality or "", network=spec.network or "")


def _healthy(entry: WorkloadEntry) -> bool:
    conditions = (entry.status or {}).get("conditions") or []
    return any(isinstance(c, dict) and c.get("type") == "Healthy" and c.get("status") == "True"
               for c in conditions)


def _sidecar_ports(instances: Iterable[WorkloadInstance]) -> frozenset[int]:
    return frozenset(p.container_port for w in instances if w.has_sidecar
                     for p in w.ports if not is_tcp(p.protocol))


_KINDS: MappingProxyType[type[Resource], str] = MappingProxyType({
    model: model.__name__ for model in (
        WorkloadEntry, Service, ServiceEntry, VirtualService, DestinationRule, Gateway,
        PeerAuthentication, AuthorizationPolicy, RequestAuthentication, Canary, Secret,
        Sidecar, EnvoyFilter)})
"""The models a snapshot is folded from, by the kind they are stored as (their name)."""


class SnapshotBuilder:
    """``build(version, objects, workloads)``: the mesh at ``version`` from stored objects
    and live workloads (pods).

    Pure in its result: the same inputs give an equal snapshot. The control plane owns
    one and calls it (debounced) whenever the store or the runtime changes, so it keeps
    the previous build (parsed objects, workloads, each Service's selection, the rule
    index) and hands back the very same objects for what did not change. A rebuild then
    costs about one look-up per object, and the xDS translation downstream tells
    "unchanged" by identity (see :mod:`meshpilot.xds`).
    """

    def __init__(self, trust_domain: str = "cluster.local",
                 mesh_config: MeshConfig | None = None) -> None:
        self.trust_domain = trust_domain
        self.mesh_config = mesh_config if mesh_config is not None else MeshConfig()
        self._parsed: _Parsed = {}
        """The previous build's parsed objects: an object whose body is unchanged is not
        validated again and keeps its identity, so a rebuild costs O(changed objects) in
        pydantic. Keyed by the body's content (its resourceVersion when it has one, as
        every stored object does), never time."""
        self._workloads: dict[tuple[str, str], WorkloadInstance] = {}
        """The previous build's instances by (namespace, name): an equal one is replaced
        by the earlier object."""
        self._namespaces: tuple[tuple[WorkloadInstance, ...], dict[str, _Namespace]] = ((), {})
        self._services: dict[str, _ServiceBuild] = {}
        """Per Service host, as last built: a Service whose object and members are the
        same objects keeps its MeshService and endpoint tuple."""
        self._index: SnapshotIndex | None = None
        self._ports: frozenset[int] = frozenset()  # the same object while the ports stay
        self._last: MeshSnapshot | None = None

    def build(
        self,
        version: int,
        objects: Sequence[tuple[ObjectKey, dict[str, Any]]],
        workloads: Sequence[WorkloadInstance] = (),
    ) -> MeshSnapshot:
        seen: _Parsed = {}
        by_kind = _by_kind(objects)

        def parsed(model: type[M]) -> list[Named[M]]:
            return self._parse(model, by_kind.get(_KINDS[model], []), seen)

        entries = parsed(WorkloadEntry)
        last = self._last
        sidecars = _kept(parsed(Sidecar), last and last.sidecars)
        if any(s.obj.spec.ingress for s in sidecars):  # pods listen where their Sidecar says
            workloads = sidecar_ingress.instances_under(sidecars, workloads)
        instances = self._stable([*workloads, *map(_entry_instance, entries)])
        same_index, by_ns = self._namespace_index(instances)
        services: dict[str, MeshService] = {}
        endpoints: dict[str, tuple[Endpoint, ...]] = {}
        self._kubernetes_services(parsed(Service), by_ns, same_index, services, endpoints)
        service_entries = parsed(ServiceEntry)
        for se in service_entries:
            _entry_services(se, by_ns, services, endpoints)
        snapshot = MeshSnapshot(
            version=version,
            services=dict(sorted(services.items())),
            endpoints=dict(sorted(endpoints.items())),
            virtual_services=_kept(parsed(VirtualService), last and last.virtual_services),
            destination_rules=_kept(parsed(DestinationRule), last and last.destination_rules),
            gateways=_kept(parsed(Gateway), last and last.gateways),
            service_entries=_kept(service_entries, last and last.service_entries),
            peer_authentications=_kept(parsed(PeerAuthentication),
                                       last and last.peer_authentications),
            authorization_policies=_kept(parsed(AuthorizationPolicy),
                                         last and last.authorization_policies),
            canaries=_kept(parsed(Canary), last and last.canaries),
            request_authentications=_kept(parsed(RequestAuthentication),
                                          last and last.request_authentications),
            secrets=_kept(parsed(Secret), last and last.secrets),
            sidecars=sidecars,
            envoy_filters=_kept(parsed(EnvoyFilter), last and last.envoy_filters),
            trust_domain=self.trust_domain,
            mesh_config=self.mesh_config,
            sidecar_ports=self._sidecar_ports(instances),
            entry_networks=of_entries(self.mesh_config.networks, entries, instances),
        )
        self._last = snapshot
        self._parsed = seen
        self._index = index.attach(snapshot, SnapshotIndex(snapshot, self._index))
        return snapshot

    def _sidecar_ports(self, instances: Iterable[WorkloadInstance]) -> frozenset[int]:
        ports = _sidecar_ports(instances)
        if ports != self._ports:
            self._ports = ports
        return self._ports

    def _parse(self, model: type[M], objects: Iterable[tuple[ObjectKey, dict[str, Any]]],
               seen: _Parsed) -> list[Named[M]]:
        out: list[Named[M]] = []
        for key, body in objects:
            hit = self._parsed.get(key)
            if hit is not None and (hit[2] is body or same_stored_body(hit[0], body)):
                seen[key] = hit  # the very body (the store mirror's), or an equal one
                out.append(hit[1])
                continue
            try:
                named = Named(key.namespace, key.name, model.model_validate(body))
            except ValidationError as exc:  # stored before a schema change; skip, say why
                log.warning("skipping %s: no longer valid: %s", key, _first_error(exc))
                continue
            seen[key] = (copy.deepcopy(body), named, body)
            out.append(named)
        return out

    def _stable(self, instances: Sequence[WorkloadInstance]) -> tuple[WorkloadInstance, ...]:
        """The instances, each placed on its named network (:func:`place`) and an earlier
        build's very object when equal to it."""
        seen: dict[tuple[str, str], WorkloadInstance] = {}
        out = []
        for w in place_all(self.mesh_config.networks, instances):
            key = (w.namespace, w.name)
            old = self._workloads.get(key)
            if old is not None and (old is w or old == w):
                w = old
            seen[key] = w
            out.append(w)
        self._workloads = seen
        return tuple(out)

    def _namespace_index(self, instances: tuple[WorkloadInstance, ...]
                         ) -> tuple[bool, dict[str, _Namespace]]:
        """(whether it is the previous build's index, the index)."""
        last, by_ns = self._namespaces
        if same_objects(last, instances):
            return True, by_ns
        self._namespaces = (instances, _by_namespace(instances))
        return False, self._namespaces[1]

    def _kubernetes_services(
        self, parsed: list[Named[Service]], by_ns: dict[str, _Namespace], same_index: bool,
        services: dict[str, MeshService], endpoints: dict[str, tuple[Endpoint, ...]],
    ) -> None:
        kept: dict[str, _ServiceBuild] = {}
        for svc in parsed:
            host = service_fqdn(svc.name, svc.namespace)
            built = self._service(svc, host, by_ns, same_index)
            kept[host] = built
            services[host], endpoints[host] = built[2], built[3]
        self._services = kept

    def _service(self, svc: Named[Service], host: str, by_ns: dict[str, _Namespace],
                 same_index: bool) -> _ServiceBuild:
        """The Service's MeshService and endpoints: the last build's when the Service and
        the workloads it selects are the same objects."""
        last = self._services.get(host)
        if last is not None and last[0] is svc and same_index:
            return last  # same Service, same workloads: the same selection
        members = tuple(_selected(by_ns, svc.namespace, svc.obj.spec.selector))
        if last is not None and last[0] is svc and same_objects(last[1], members):
            return last
        service = _mesh_service(svc, host)
        eps = tuple(sorted(
            (ep for w in members for p in service.ports
             if (ep := _service_endpoint(host, p, w)) is not None), key=_endpoint_order))
        return (svc, members, service, eps)


def _first_error(exc: ValidationError) -> dict[str, Any]:
    """Where and why, without the value at fault: a Secret's values are credentials, and
    pydantic's error carries the input it refused."""
    first = exc.errors()[0]
    return {"type": first["type"], "loc": first["loc"], "msg": first["msg"]}


def _kept(objects: list[Named[M]], last: tuple[Named[M], ...] | None) -> tuple[Named[M], ...]:
    """The last snapshot's very tuple when it holds the very same objects, so "no rule of
    this kind changed" is one identity test downstream."""
    if last is not None and same_objects(objects, last):
        return last
    return tuple(objects)


def build_snapshot(
    version: int,
    objects: Sequence[tuple[ObjectKey, dict[str, Any]]],
    workloads: Sequence[WorkloadInstance] = (),
) -> MeshSnapshot:
    """A snapshot built from nothing remembered (a fresh :class:`SnapshotBuilder`)."""
    return SnapshotBuilder().build(version, objects, workloads)


EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
"""A Service's exportTo, comma separated, as Istio reads it from the annotation."""


def _mesh_service(svc: Named[Service], host: str) -> MeshService:
    spec = svc.obj.spec
    ports = tuple(
        ServicePort(port=p.port, name=p.name or "", target_port=p.target_port,
                    protocol=port_protocol(p.name, p.app_protocol))
        for p in spec.ports
    )
    annotation = svc.obj.metadata.annotations.get(EXPORT_TO_ANNOTATION, "")
    return MeshService(
        host=host, name=svc.name, namespace=svc.namespace, ports=ports,
        selector=dict(spec.selector or {}),
        short_names=(svc.name, f"{svc.name}.{svc.namespace}",
                     f"{svc.name}.{svc.namespace}.svc"),
        export_to=tuple(e.strip() for e in annotation.split(",") if e.strip()),
    )


_RESOLUTIONS = MappingProxyType({"DNS": "DNS", "DNS_ROUND_ROBIN": "DNS_ROUND_ROBIN",
                                 "STATIC": "STATIC", "NONE": "NONE"})


def _entry_services(
    se: Named[ServiceEntry], by_ns: dict[str, _Namespace], services: dict[str, MeshService],
    endpoints: dict[str, tuple[Endpoint, ...]],
) -> None:
    """A ServiceEntry's hosts as services, with its inline or selected endpoints."""
    spec = se.obj.spec
    resolution = _RESOLUTIONS.get(spec.resolution or "NONE", "NONE")
    ports = tuple(
        ServicePort(port=p.number, name=p.name, target_port=p.target_port,
                    protocol=port_protocol(p.protocol or p.name))
        for p in spec.ports
    )
    selector = dict(spec.workload_selector.labels) if spec.workload_selector else None
    members = [*_inline_instances(se), *_selected(by_ns, se.namespace, selector)]
    if resolution == "NONE" and not members and not any("*" in h for h in spec.hosts):
        members = _original_destination(se)
    for raw_host in spec.hosts:
        host = fqdn(raw_host, se.namespace)
        if "*" in host and (host == "*" or (resolution in ("DNS", "DNS_ROUND_ROBIN")
                                            and not members)):
            continue  # no address to send a covered host to
        mode = "EDS" if resolution in ("STATIC", "NONE") and members else resolution
        services[host] = MeshService(
            host=host, name=raw_host, namespace=se.namespace, ports=ports,
            origin="ServiceEntry", location=spec.location or "MESH_EXTERNAL",
            resolution=mode,  # type: ignore[arg-type]
            selector=selector, export_to=tuple(spec.export_to),
            short_names=entry_addresses(spec.addresses),
        )
        endpoints[host] = tuple(sorted(
            _entry_endpoints(se, host, raw_host, ports, members, resolution),
            key=_endpoint_order))


def _original_destination(se: Named[ServiceEntry]) -> list[WorkloadInstance]:
    """Resolution NONE without endpoints and with one single address: Istio passes a
    connection through to the address the client connected to, which can only be that
    one (a client here reaches the entry through its sidecar, not the address), so it is
    the endpoint. With several addresses, or a block, there is no telling which; a
    wildcard entry passes through by name instead (``xds.translate.passthrough``)."""
    singles = entry_addresses(se.obj.spec.addresses)
    if len(singles) != 1 or len(se.obj.spec.addresses) != 1:
        return []
    return [WorkloadInstance(name=f"{se.name}-address", namespace=se.namespace,
                             ip=singles[0], has_sidecar=False)]


def entry_addresses(addresses: Iterable[str]) -> tuple[str, ...]:
    """The ServiceEntry ``addresses`` a request can name as its host: single IPs (a
    ``/32`` or ``/128`` block is one). A wider block names no host an HTTP client writes,
    so it is not one (and is warned about at apply)."""
    out = []
    for text in addresses:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        if net.num_addresses == 1:
            out.append(str(net.network_address))
    return tuple(out)


def _inline_instances(se: Named[ServiceEntry]) -> list[WorkloadInstance]:
    return [
        WorkloadInstance(name=f"{se.name}-{i}", namespace=se.namespace,
                         ip=e.address or "", labels=dict(e.labels),
                         named_ports=dict(e.ports), has_sidecar=False, weight=e.weight or 1,
                         locality=e.locality or "", network=e.network or "")
        for i, e in enumerate(se.obj.spec.endpoints)
    ]


def _entry_endpoints(
    se: Named[ServiceEntry], host: str, raw_host: str, ports: tuple[ServicePort, ...],
    members: list[WorkloadInstance], resolution: str,
) -> list[Endpoint]:
    """Per port: the members' endpoints; with none and DNS resolution, the host itself."""
    eps: list[Endpoint] = []
    for p in ports:
        eps.extend(ep for w in members if (ep := _entry_endpoint(host, p, w)) is not None)
        if not members and resolution in ("DNS", "DNS_ROUND_ROBIN"):
            eps.append(Endpoint(host=host, service_port=p.port, address=raw_host,
                                port=p.target_port or p.port, workload=raw_host,
                                namespace=se.namespace))
    return eps


def _endpoint_order(ep: Endpoint) -> tuple[Any, ...]:
    return (ep.service_port, ep.address, ep.port, ep.workload)


def _service_endpoint(host: str, port: ServicePort, w: WorkloadInstance) -> Endpoint | None:
    """Where a Service port lands on one workload (Kubernetes targetPort rules)."""
    target = port.target_port if port.target_port is not None else port.port
    if w.has_sidecar:
        declared = {p.container_port: p for p in w.ports}
        named = {p.name: p for p in w.ports if p.name}
        inbound = named.get(target) if isinstance(target, str) else declared.get(int(target))
        if inbound is None:
            return None  # no inbound listener for an undeclared container port
        number = inbound.container_port
    elif isinstance(target, str):
        if target not in w.named_ports:
            return None
        number = w.named_ports[target]
    else:
        number = w.named_ports.get(port.name, int(target))
    return Endpoint(host=host, service_port=port.port, address=w.ip, port=number,
                    labels=dict(w.labels), workload=w.workload_name, namespace=w.namespace,
                    ready=w.ready, weight=w.weight, has_sidecar=w.has_sidecar,
                    service_account=w.service_account if w.has_sidecar else "",
                    locality=locality.of_workload(w.locality, w.labels), network=w.network,
                    host_gateway=w.host_gateway)


def _entry_endpoint(host: str, port: ServicePort, w: WorkloadInstance) -> Endpoint | None:
    """A ServiceEntry endpoint: ``ports[name]`` if given, else targetPort, else the port."""
    if not w.ip:
        return None
    if w.has_sidecar:
        return _service_endpoint(host, port, w)
    number = w.named_ports.get(port.name, port.target_port or port.port)
    return Endpoint(host=host, service_port=port.port, address=w.ip, port=int(number),
                    labels=dict(w.labels), workload=w.workload_name, namespace=w.namespace,
                    ready=w.ready, weight=w.weight,
                    locality=locality.of_workload(w.locality, w.labels), network=w.network)
