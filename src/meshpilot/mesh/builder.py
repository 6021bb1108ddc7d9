"""Fold stored config and live workloads into one MeshSnapshot.

Pure in its result: given the same objects and workloads it returns an equal snapshot.
The control plane calls it (debounced) whenever the store or the runtime changes, so it
remembers the previous build (parsed objects, workloads, each Service's selection) and
hands back the very same objects for what did not change: a rebuild costs about one
look-up per object, and the xDS build downstream tells "unchanged" by identity.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from meshpilot.api.base import Resource
from meshpilot.api.flagger import Canary
from meshpilot.api.hosts import fqdn, service_fqdn
from meshpilot.api.identity import ObjectKey
from meshpilot.api.kubernetes import Service
from meshpilot.api.networking import (
    DestinationRule,
    Gateway,
    ServiceEntry,
    VirtualService,
    WorkloadEntry,
)
from meshpilot.api.security import AuthorizationPolicy, PeerAuthentication
from meshpilot.mesh.model import (
    Endpoint,
    MeshService,
    MeshSnapshot,
    Named,
    Protocol,
    ServicePort,
    WorkloadInstance,
    same_objects,
)

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Resource)

_PROTOCOL_PREFIXES: tuple[tuple[str, Protocol], ...] = (
    ("http2", "HTTP2"), ("grpc-web", "HTTP"), ("grpc", "GRPC"), ("https", "HTTPS"),
    ("http", "HTTP"), ("tcp", "TCP"), ("tls", "TLS"),
)


def port_protocol(name: str | None, app_protocol: str | None = None) -> Protocol:
    """Istio's protocol selection: ``appProtocol``, else the port name's prefix
    (``http-web`` → HTTP). Unnamed ports are treated as HTTP: every meshpilot client
    reaches services through an HTTP proxy, so HTTP is what arrives."""
    for candidate in (app_protocol, name):
        if not candidate:
            continue
        lowered = candidate.lower()
        for prefix, protocol in _PROTOCOL_PREFIXES:
            if lowered == prefix or lowered.startswith(prefix + "-"):
                return protocol
    return "HTTP"


_Parsed = dict[ObjectKey, tuple[dict[str, Any], Named[Any], dict[str, Any]]]
_parsed: _Parsed = {}
"""The previous build's parsed objects: key -> (a private copy of the body, Named, the
body given; read-only, as the store mirror's bodies are).

An object whose body is unchanged is not validated again and keeps its identity from one
snapshot to the next, so a rebuild costs O(changed objects) in pydantic and the xDS
build's input comparisons succeed on identity. Keyed by the body's content (its
resourceVersion when it has one, as every stored object does), never time.
"""


def _parse(
    model: type[M], objects: Iterable[tuple[ObjectKey, dict[str, Any]]], seen: _Parsed
) -> list[Named[M]]:
    out: list[Named[M]] = []
    parsed = _parsed
    for key, body in objects:
        hit = parsed.get(key)
        if hit is not None and (hit[2] is body or same_stored_body(hit[0], body)):
            seen[key] = hit  # the very body (the store mirror's), or an equal one
            out.append(hit[1])
            continue
        try:
            named = Named(key.namespace, key.name, model.model_validate(body))
        except ValidationError as exc:  # stored before a schema change; skip, say why
            log.warning("skipping %s: no longer valid: %s", key, exc.errors()[:1])
            continue
        seen[key] = (copy.deepcopy(body), named, body)
        out.append(named)
    return out


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


_workloads: dict[tuple[str, str], WorkloadInstance] = {}
"""The previous build's workload instances by (namespace, name): an equal one is replaced by
the earlier object, so what did not change keeps its identity."""
_index: tuple[tuple[WorkloadInstance, ...], dict[str, _Namespace]] = ((), {})
"""The previous build's workloads and their namespace index."""
_services: dict[str, tuple[Named[Service], tuple[WorkloadInstance, ...], MeshService,
                           tuple[Endpoint, ...]]] = {}
"""Per Service host, the previous build's (parsed Service, members, MeshService,
endpoints): a Service whose object and members are the same objects keeps its MeshService
and endpoint tuple, so the xDS build sees the very same inputs and skips it."""


def _stable(instances: Sequence[WorkloadInstance]) -> tuple[WorkloadInstance, ...]:
    global _workloads
    seen: dict[tuple[str, str], WorkloadInstance] = {}
    out = []
    for w in instances:
        key = (w.namespace, w.name)
        old = _workloads.get(key)
        if old is not None and (old is w or old == w):
            w = old
        seen[key] = w
        out.append(w)
    _workloads = seen
    return tuple(out)


def _namespaces(instances: tuple[WorkloadInstance, ...]) -> tuple[bool, dict[str, _Namespace]]:
    """(whether it is the previous build's index, the index)."""
    global _index
    last, index = _index
    if same_objects(last, instances):
        return True, index
    _index = (instances, _by_namespace(instances))
    return False, _index[1]


def build_snapshot(
    version: int,
    objects: Sequence[tuple[ObjectKey, dict[str, Any]]],
    workloads: Sequence[WorkloadInstance] = (),
) -> MeshSnapshot:
    """The mesh at ``version`` from stored ``objects`` and live ``workloads`` (pods)."""
    global _parsed, _services
    seen: _Parsed = {}
    by_kind: dict[str, list[tuple[ObjectKey, dict[str, Any]]]] = {}
    for key, body in objects:
        by_kind.setdefault(key.kind, []).append((key, body))

    entries = _parse(WorkloadEntry, by_kind.get("WorkloadEntry", []), seen)
    instances = _stable(list(workloads) + [
        WorkloadInstance(
            name=e.name, namespace=e.namespace, ip=e.obj.spec.address or "127.0.0.1",
            labels=dict(e.obj.spec.labels), named_ports=dict(e.obj.spec.ports),
            has_sidecar=False, weight=e.obj.spec.weight or 1,
        )
        for e in entries
    ])
    services: dict[str, MeshService] = {}
    endpoints: dict[str, tuple[Endpoint, ...]] = {}
    same_index, by_ns = _namespaces(instances)
    kept: dict[str, tuple[Named[Service], tuple[WorkloadInstance, ...], MeshService,
                          tuple[Endpoint, ...]]] = {}

    for svc in _parse(Service, by_kind.get("Service", []), seen):
        host = service_fqdn(svc.name, svc.namespace)
        spec = svc.obj.spec
        last = _services.get(host)
        if last is not None and last[0] is svc and same_index:
            kept[host] = last  # same Service, same workloads: the same selection
            services[host], endpoints[host] = last[2], last[3]
            continue
        members = tuple(_selected(by_ns, svc.namespace, spec.selector))
        if last is not None and last[0] is svc and same_objects(last[1], members):
            kept[host] = last
            services[host], endpoints[host] = last[2], last[3]
            continue
        ports = tuple(
            ServicePort(port=p.port, name=p.name or "", target_port=p.target_port,
                        protocol=port_protocol(p.name, p.app_protocol))
            for p in spec.ports
        )
        services[host] = MeshService(
            host=host, name=svc.name, namespace=svc.namespace, ports=ports,
            selector=dict(spec.selector or {}),
            short_names=(svc.name, f"{svc.name}.{svc.namespace}",
                         f"{svc.name}.{svc.namespace}.svc"),
        )
        endpoints[host] = tuple(sorted(
            (ep for w in members for p in ports
             if (ep := _service_endpoint(host, p, w)) is not None), key=_endpoint_order))
        kept[host] = (svc, members, services[host], endpoints[host])
    _services = kept

    for se in _parse(ServiceEntry, by_kind.get("ServiceEntry", []), seen):
        spec = se.obj.spec
        resolution = {"DNS": "DNS", "DNS_ROUND_ROBIN": "DNS", "STATIC": "STATIC",
                      "NONE": "NONE"}.get(spec.resolution or "NONE", "NONE")
        ports = tuple(
            ServicePort(port=p.number, name=p.name, target_port=p.target_port,
                        protocol=port_protocol(p.protocol or p.name))
            for p in spec.ports
        )
        selected = _selected(by_ns, se.namespace, dict(spec.workload_selector.labels)
                             if spec.workload_selector else None)
        inline = [
            WorkloadInstance(name=f"{se.name}-{i}", namespace=se.namespace,
                             ip=e.address or "", labels=dict(e.labels),
                             named_ports=dict(e.ports), has_sidecar=False, weight=e.weight or 1)
            for i, e in enumerate(spec.endpoints)
        ]
        for raw_host in spec.hosts:
            host = fqdn(raw_host, se.namespace)
            if "*" in host:
                continue  # wildcard entries route by the request's host; not modelled yet
            mode = "EDS" if resolution in ("STATIC", "NONE") and (inline or selected) else (
                resolution)
            services[host] = MeshService(
                host=host, name=raw_host, namespace=se.namespace, ports=ports,
                origin="ServiceEntry", location=spec.location or "MESH_EXTERNAL",
                resolution=mode,  # type: ignore[arg-type]
                selector=dict(spec.workload_selector.labels) if spec.workload_selector else None,
            )
            eps: list[Endpoint] = []
            for p in ports:
                for w in inline + selected:
                    ep = _entry_endpoint(host, p, w)
                    if ep is not None:
                        eps.append(ep)
                if not inline and not selected and resolution == "DNS":
                    eps.append(Endpoint(host=host, service_port=p.port, address=raw_host,
                                        port=p.target_port or p.port, workload=raw_host,
                                        namespace=se.namespace))
            endpoints[host] = tuple(sorted(eps, key=_endpoint_order))

    snapshot = MeshSnapshot(
        version=version,
        services=dict(sorted(services.items())),
        endpoints=dict(sorted(endpoints.items())),
        virtual_services=tuple(_parse(VirtualService, by_kind.get("VirtualService", []), seen)),
        destination_rules=tuple(_parse(DestinationRule, by_kind.get("DestinationRule", []), seen)),
        gateways=tuple(_parse(Gateway, by_kind.get("Gateway", []), seen)),
        service_entries=tuple(_parse(ServiceEntry, by_kind.get("ServiceEntry", []), seen)),
        peer_authentications=tuple(
            _parse(PeerAuthentication, by_kind.get("PeerAuthentication", []), seen)),
        authorization_policies=tuple(
            _parse(AuthorizationPolicy, by_kind.get("AuthorizationPolicy", []), seen)),
        canaries=tuple(_parse(Canary, by_kind.get("Canary", []), seen)),
    )
    _parsed = seen
    return snapshot


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
                    labels=dict(w.labels), workload=w.name, namespace=w.namespace,
                    ready=w.ready, weight=w.weight)


def _entry_endpoint(host: str, port: ServicePort, w: WorkloadInstance) -> Endpoint | None:
    """A ServiceEntry endpoint: ``ports[name]`` if given, else targetPort, else the port."""
    if not w.ip:
        return None
    if w.has_sidecar:
        return _service_endpoint(host, port, w)
    number = w.named_ports.get(port.name, port.target_port or port.port)
    return Endpoint(host=host, service_port=port.port, address=w.ip, port=int(number),
                    labels=dict(w.labels), workload=w.name, namespace=w.namespace,
                    ready=w.ready, weight=w.weight)
