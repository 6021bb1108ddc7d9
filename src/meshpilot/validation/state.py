"""Checks across objects, judged on the state as it would be after the whole change.

A file that brings a VirtualService and the DestinationRule defining its subsets applies
cleanly in any order, because the subset check looks at the state after the apply,
not at the order of documents.

A check added here (or in a ``*_state`` module) that looks an object up must say by what
in ``state_refs``: an apply is judged only on the objects around its change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from meshpilot.api.hosts import fqdn, host_matches, service_fqdn, short_name
from meshpilot.api.kinds import by_kind
from meshpilot.api.protocols import selected_protocol
from meshpilot.validation import codes
from meshpilot.validation.alert_state import check_alert_refs
from meshpilot.validation.argo_analysis_state import check_analysis_templates
from meshpilot.validation.argo_workload_state import check_workload_refs
from meshpilot.validation.autoscaler_state import check_autoscalers
from meshpilot.validation.canary_state import check_canary_hosts
from meshpilot.validation.codes import Severity
from meshpilot.validation.credential_state import check_client_credentials
from meshpilot.validation.delegate_state import check_delegates
from meshpilot.validation.diagnostics import Diagnostic
from meshpilot.validation.envoy_filter_state import check_envoy_filters
from meshpilot.validation.finding import Path
from meshpilot.validation.gateway_state import check_gateways
from meshpilot.validation.mesh_l4_state import check_mesh_l4_routes
from meshpilot.validation.pod_config_state import check_pod_config
from meshpilot.validation.rules import findings_for_stored
from meshpilot.validation.security_state import check_security
from meshpilot.validation.service_entry_rules import check_wildcard_routes
from meshpilot.validation.state_object import Findings, StateObject
from meshpilot.validation.template_secret_state import check_template_secrets
from meshpilot.validation.workload_group_rules import check_members

Report = Callable[[StateObject], bool]
"""Whether findings about an object are wanted (changed, or every object for describe)."""


@dataclass
class _Index:
    """What the state offers: hosts that exist, subsets per host, workloads' labels."""

    services: dict[str, dict[str, str]] = field(default_factory=dict)  # fqdn → selector
    service_protocols: dict[str, frozenset[str]] = field(default_factory=dict)
    """Service fqdn → the protocols of its ports (Istio's selection)."""
    entry_hosts: list[tuple[str, StateObject]] = field(default_factory=list)
    workloads: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (ns, labels)
    canary_hosts: set[str] = field(default_factory=set)
    gateways: set[tuple[str, str]] = field(default_factory=set)
    rules: list[tuple[str, StateObject]] = field(default_factory=list)  # (fqdn host, DR)

    def add_service(self, obj: StateObject) -> None:
        self.services[service_fqdn(obj.key.name, obj.namespace)] = dict(
            obj.spec.get("selector") or {})
        self.service_protocols[service_fqdn(obj.key.name, obj.namespace)] = frozenset(
            selected_protocol(str(p.get("name") or ""), str(p.get("appProtocol") or ""))
            for p in obj.spec.get("ports") or [] if isinstance(p, dict))

    def add_service_entry(self, obj: StateObject) -> None:
        """Its hosts exist, and its inline endpoints are workloads a subset may select."""
        protocols = frozenset(
            selected_protocol(str(p.get("protocol") or p.get("name") or ""), "")
            for p in obj.spec.get("ports") or [] if isinstance(p, dict))
        for host in obj.spec.get("hosts") or []:
            self.entry_hosts.append((fqdn(str(host), obj.namespace), obj))
            self.service_protocols[fqdn(str(host), obj.namespace)] = protocols
        for ep in obj.spec.get("endpoints") or []:
            if isinstance(ep, dict):
                self.workloads.append((obj.namespace, dict(ep.get("labels") or {})))

    def add_workload_entry(self, obj: StateObject) -> None:
        self.workloads.append((obj.namespace, dict(obj.spec.get("labels") or {})))

    def add_deployment(self, obj: StateObject) -> None:
        template = obj.spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        self.workloads.append((obj.namespace, dict(labels)))

    def add_canary(self, obj: StateObject) -> None:
        """A Canary makes the apex, -primary and -canary Services of its service name
        (the target's name by default), so routes may name them before they exist."""
        target = (obj.spec.get("targetRef") or {}).get("name")
        service = (obj.spec.get("service") or {}).get("name") or target
        if service:
            for suffix in ("", "-primary", "-canary"):
                self.canary_hosts.add(service_fqdn(f"{service}{suffix}", obj.namespace))

    def add_gateway(self, obj: StateObject) -> None:
        self.gateways.add((obj.namespace, obj.key.name))

    def add_destination_rule(self, obj: StateObject) -> None:
        host = obj.spec.get("host")
        if isinstance(host, str):
            self.rules.append((fqdn(host, obj.namespace), obj))


_INDEXERS: Mapping[str, Callable[[_Index, StateObject], None]] = MappingProxyType({
    "Service": _Index.add_service,
    "ServiceEntry": _Index.add_service_entry,
    "WorkloadEntry": _Index.add_workload_entry,
    "Deployment": _Index.add_deployment,
    # An Argo Rollout's pods carry its template's labels (plus the revision's hash,
    # which its generated Deployments carry once they run)
    "Rollout": _Index.add_deployment,
    "Canary": _Index.add_canary,
    "Gateway": _Index.add_gateway,
    "DestinationRule": _Index.add_destination_rule,
})
"""The kinds the cross-object checks look up; objects of other kinds offer nothing."""


def _index(objects: Iterable[StateObject]) -> _Index:
    idx = _Index()
    for obj in objects:
        add = _INDEXERS.get(obj.key.kind)
        if add is not None:
            add(idx, obj)
    return idx


def _host_known(idx: _Index, host: str) -> bool:
    if host in idx.services or host in idx.canary_hosts:
        return True
    if any(host_matches(pattern, host) for pattern, _ in idx.entry_hosts):
        return True
    # A WorkloadEntry labelled app=<name> stands for the host <name>.<ns>.svc.cluster.local.
    return any(
        labels.get("app") == short_name(host) and host == service_fqdn(labels["app"], ns)
        for ns, labels in idx.workloads
    )


def _subsets_for(idx: _Index, host: str) -> dict[str, dict[str, str]]:
    subsets: dict[str, dict[str, str]] = {}
    for rule_host, rule in idx.rules:
        if host_matches(rule_host, host):
            for subset in rule.spec.get("subsets") or []:
                if isinstance(subset, dict) and isinstance(subset.get("name"), str):
                    subsets.setdefault(subset["name"], dict(subset.get("labels") or {}))
    return subsets


def destinations(spec: dict[str, Any]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every destination a VirtualService sends or mirrors traffic to, with its path."""
    for proto in ("http", "tcp", "tls"):
        for i, route in enumerate(spec.get(proto) or []):
            if not isinstance(route, dict):
                continue
            for j, dest in enumerate(route.get("route") or []):
                if isinstance(dest, dict) and isinstance(dest.get("destination"), dict):
                    yield ("spec", proto, i, "route", j, "destination"), dest["destination"]
            if isinstance(route.get("mirror"), dict):
                yield ("spec", proto, i, "mirror"), route["mirror"]
            for j, mirror in enumerate(route.get("mirrors") or []):
                if isinstance(mirror, dict) and isinstance(mirror.get("destination"), dict):
                    yield ("spec", proto, i, "mirrors", j, "destination"), mirror["destination"]


def is_mesh_bound(spec: dict[str, Any]) -> bool:
    gateways = spec.get("gateways") or []
    return not gateways or "mesh" in gateways


def check_state(objects: list[StateObject], *, all_objects: bool = False) -> list[Diagnostic]:
    """Cross-object diagnostics for the changed objects (or every object if ``all_objects``).

    Errors: a subset no DestinationRule defines (MP1001), two VirtualServices claiming
    one mesh host (MP1002), a Gateway credential Secret that cannot serve (MP1003).
    Warnings: unknown hosts, gateways, and subsets selecting no workload; each kind's own
    rules (validation.rules); security policies that Istio would not enforce as written
    (validation.security_state); Gateway credentials not there yet and passthrough
    servers without routes (validation.gateway_state).
    """
    return judge(objects, lambda obj: obj.changed or all_objects)


def judge(objects: list[StateObject], report: Report) -> list[Diagnostic]:
    """The findings about the objects ``report`` picks, judged against ``objects``.

    Every finding is about an object ``report`` picks, and depends only on that object's
    neighbourhood (validation.state_refs): given the reported objects and their
    neighbourhoods, in the order they have in the whole state, this returns what it
    returns for the whole state (validation.state_index relies on it)."""
    idx = _index(objects)
    found = Findings()
    claimed: dict[str, StateObject] = {}
    for obj in sorted(objects, key=lambda o: (o.changed, o.key)):  # existing claims first
        if obj.key.kind == "VirtualService" and is_mesh_bound(obj.spec):
            for i, host in enumerate(obj.spec.get("hosts") or []):
                name = fqdn(str(host), obj.namespace)
                other = claimed.setdefault(name, obj)
                if other is not obj and report(obj):
                    found.add(
                        codes.HOST_CONFLICT, obj, ("spec", "hosts", i),
                        f"host {name} is already claimed for the mesh by VirtualService "
                        f"{other.key.namespace}/{other.key.name}; merge the routes into one "
                        "VirtualService, or bind one of them to a Gateway",
                    )
    for obj in objects:
        if not report(obj):
            continue
        if obj.key.kind == "VirtualService":
            _check_virtual_service(obj, idx, found)
        elif obj.key.kind == "DestinationRule":
            _check_destination_rule(obj, idx, found)
        _check_own_rules(obj, found)
    for check in (check_security, check_gateways, check_client_credentials, check_delegates,
                  check_pod_config, check_template_secrets, check_canary_hosts,
                  check_alert_refs, check_members, check_analysis_templates,
                  check_workload_refs, check_autoscalers, check_envoy_filters,
                  check_wildcard_routes):
        check(objects, report, found)
    return found.items


def _check_own_rules(obj: StateObject, found: Findings) -> None:
    """The kind's own rules: their warnings are reported here, so they show in apply,
    analyze and describe alike (their errors were refused at apply; an object stored
    before a rule existed shows them in describe)."""
    for finding in findings_for_stored(by_kind(obj.key.kind).model, obj.body):
        found.add(finding.code, obj, finding.path, finding.message)


def _check_virtual_service(obj: StateObject, idx: _Index, found: Findings) -> None:
    for i, gateway in enumerate(obj.spec.get("gateways") or []):
        if not isinstance(gateway, str) or gateway == "mesh":
            continue
        ns, _, name = gateway.rpartition("/")
        if (ns or obj.namespace, name) not in idx.gateways:
            found.add(
                codes.UNKNOWN_GATEWAY, obj, ("spec", "gateways", i),
                f"Gateway {ns or obj.namespace}/{name} does not exist (yet); the routes "
                "bound to it serve nothing until it does",
            )
    warned: set[str] = set()
    for path, dest in destinations(obj.spec):
        host = dest.get("host")
        if not isinstance(host, str):
            continue
        name = fqdn(host, obj.namespace)
        if not _host_known(idx, name) and name not in warned:
            warned.add(name)
            found.add(
                codes.UNKNOWN_HOST, obj, (*path, "host"),
                f"host {name} has no Service, ServiceEntry or WorkloadEntry behind it; "
                "requests to it will fail until one exists",
            )
        subset = dest.get("subset")
        if isinstance(subset, str) and subset:
            defined = _subsets_for(idx, name)
            if subset not in defined:
                valid = ", ".join(sorted(defined)) or "none"
                found.add(
                    codes.UNKNOWN_SUBSET, obj, (*path, "subset"),
                    f"subset {subset!r} of host {name} is not defined by any "
                    f"DestinationRule (subsets defined: {valid}); apply a DestinationRule "
                    "with this subset in the same change",
                )


    check_mesh_l4_routes(obj, idx.service_protocols, found)


def _check_destination_rule(obj: StateObject, idx: _Index, found: Findings) -> None:
    host = obj.spec.get("host")
    if not isinstance(host, str):
        return
    name = fqdn(host, obj.namespace)
    if "*" in name:
        return
    if not _host_known(idx, name):
        found.add(
            codes.DR_UNKNOWN_HOST, obj, ("spec", "host"),
            f"host {name} has no Service, ServiceEntry or WorkloadEntry behind it",
        )
        return
    if name in idx.canary_hosts and name not in idx.services:
        return  # the Canary's generated workloads are not known until it runs
    selector = idx.services.get(name, {})
    namespace = name.split(".")[1] if name in idx.services else None
    for i, subset in enumerate(obj.spec.get("subsets") or []):
        if not isinstance(subset, dict):
            continue
        wanted = {**selector, **dict(subset.get("labels") or {})}
        if not wanted:
            continue
        if not any(
            (namespace is None or ns == namespace)
            and all(labels.get(k) == v for k, v in wanted.items())
            for ns, labels in idx.workloads
        ):
            found.add(
                codes.SUBSET_NO_WORKLOAD, obj, ("spec", "subsets", i, "labels"),
                f"subset {subset.get('name')!r} selects no workload (labels "
                f"{_fmt_labels(wanted)}); traffic routed to it will fail with 503",
            )


def _fmt_labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


__all__ = ["Report", "Severity", "StateObject", "check_state", "judge"]
