"""What each object offers to the cross-object checks, and what its own findings read.

An apply is judged on the changed objects alone, but their findings depend on other
objects: the Service behind a route's host, the Secret a Gateway names, the other
VirtualServices claiming a host. Each such dependency is a *reference*, a small tuple
such as ``("host", "orders.shop.svc.cluster.local")`` or ``("secret", "shop", "tls")``:
an object *provides* the references others may look it up by, and *reads* the ones its
own findings look up. The findings about an object can then differ only if an object
that provides one of its reads, or reads one of its provides, changes; that one-hop
neighbourhood is all an incremental check needs to see (``state_index``).

Every check in ``state`` and the ``*_state`` modules is described here; a check that
looks something up must add the reference it looks it up by, on both sides. A reference
may be broader than the look-up (it only widens the neighbourhood), never narrower.
Objects of every kind provide ``("kind", kind)``, for the few checks that read a whole
kind (PeerAuthentication conflicts, wildcard hosts of a Canary).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from meshpilot.api.hosts import fqdn, service_fqdn, short_name
from meshpilot.api.workload_group import AUTO_REGISTRATION_ANNOTATION
from meshpilot.validation.canary_state import canary_host_names
from meshpilot.validation.credential_state import credential_names
from meshpilot.validation.envoy_filter_state import selector_of
from meshpilot.validation.gateway_state import GATEWAY_NAMESPACE
from meshpilot.validation.pod_config_state import config_references
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.state import destinations, is_mesh_bound
from meshpilot.validation.state_object import StateObject

Ref = tuple[str, ...]


@dataclass(frozen=True)
class Refs:
    """The references an object provides, and those its findings read."""

    provides: tuple[Ref, ...]
    reads: tuple[Ref, ...]


def references(obj: StateObject) -> Refs:
    """What ``obj`` provides and reads, by its kind."""
    provides: set[Ref] = {("kind", obj.key.kind)}
    reads: set[Ref] = set()
    describe = _BY_KIND.get(obj.key.kind)
    if describe is not None:
        describe(obj, provides, reads)
    return Refs(tuple(provides), tuple(reads))


def host_patterns(host: str) -> Iterator[str]:
    """Every pattern ``host_matches(pattern, host)`` accepts: the host itself, ``*``, and
    ``*.`` followed by each suffix of it after a dot."""
    yield host
    yield "*"
    parts = host.split(".")
    for i in range(1, len(parts)):
        yield "*." + ".".join(parts[i:])


def _host_lookup(host: str, reads: set[Ref]) -> None:
    """What ``state._host_known`` looks a host up by: Services, Canaries' hosts and
    ServiceEntry hosts (wildcards among them), and workloads labelled app=<short name>."""
    reads.update(("host", p) for p in host_patterns(host))
    reads.add(("label", "app", short_name(host)))


def _labels(labels: Any, provides: set[Ref]) -> None:
    provides.update(("label", str(k), str(v)) for k, v in as_mapping(labels).items())


def _workload(obj: StateObject, labels: Any, provides: set[Ref]) -> None:
    _labels(labels, provides)
    provides.add(("workload-ns", obj.namespace))


def _service(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
    provides.add(("host", service_fqdn(obj.key.name, obj.namespace)))


def _service_entry(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
    provides.update(("host", fqdn(str(h), obj.namespace)) for h in as_list(obj.spec.get("hosts")))
    for ep in as_list(obj.spec.get("endpoints")):
        if isinstance(ep, dict):
            _workload(obj, ep.get("labels"), provides)


def _workload_entry(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
    """Its labels; an auto-registered one reads its WorkloadGroup (``check_members``)."""
    _workload(obj, obj.spec.get("labels"), provides)
    annotations = as_mapping(as_mapping(obj.body.get("metadata")).get("annotations"))
    group = annotations.get(AUTO_REGISTRATION_ANNOTATION)
    if group is not None:
        reads.add(("workloadgroup", obj.namespace, str(group)))


def _pod_owner(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
    """Deployments and Rollouts: their pods' labels; a Deployment reads its pods'
    ConfigMaps and Secrets and is what an autoscaler scales (``check_autoscalers``
    reads its pods' CPU requests); a Rollout reads the analysis templates it names
    (``check_analysis_templates``: every one, a reference broader than the look-up) and
    the Deployment its workloadRef names."""
    template = as_mapping(obj.spec.get("template"))
    _workload(obj, as_mapping(template.get("metadata")).get("labels"), provides)
    if obj.key.kind == "Deployment":
        provides.add(("deployment", obj.namespace, obj.key.name))
        pod = as_mapping(template.get("spec"))
        for _, kind, name in config_references(pod, ()):
            reads.add((kind.lower(), obj.namespace, name))
    else:
        reads.update({("kind", "AnalysisTemplate"), ("kind", "ClusterAnalysisTemplate")})
        ref = as_mapping(obj.spec.get("workloadRef")).get("name")
        if isinstance(ref, str):  # check_workload_refs
            reads.add(("deployment", obj.namespace, ref))


def _autoscaler(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
    """Looked up by a Canary's autoscalerRef; reads the Deployment it scales."""
    provides.add(("hpa", obj.namespace, obj.key.name))
    target = as_mapping(obj.spec.get("scaleTargetRef"))
    if isinstance(target.get("name"), str):
        reads.add(("deployment", obj.namespace, target["name"]))


def _canary(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
    target = as_mapping(obj.spec.get("targetRef")).get("name")
    service = as_mapping(obj.spec.get("service"))
    name = service.get("name") or target
    if name:
        provides.update(("host", service_fqdn(f"{name}{suffix}", obj.namespace))
                        for suffix in ("", "-primary", "-canary"))
    for host in as_list(service.get("hosts")):
        for candidate in canary_host_names(str(host), obj.namespace):
            if candidate.startswith("*"):  # matches hosts by suffix: every one may
                reads.update({("kind", "Service"), ("kind", "ServiceEntry")})
            else:
                reads.add(("host", candidate))
    scaler = as_mapping(obj.spec.get("autoscalerRef")).get("name")
    if isinstance(scaler, str):
        reads.add(("hpa", obj.namespace, scaler))
    for alert in as_list(as_mapping(obj.spec.get("analysis")).get("alerts")):
        ref = as_mapping(as_mapping(alert).get("providerRef"))
        if isinstance(ref.get("name"), str):
            reads.add(("alertprovider", str(ref.get("namespace") or obj.namespace),
                       ref["name"]))


def _gateway(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
    provides.add(("gateway", obj.namespace, obj.key.name))
    reads.add(("binds", obj.namespace, obj.key.name))
    for server in as_list(obj.spec.get("servers")):
        name = as_mapping(as_mapping(server).get("tls")).get("credentialName")
        if isinstance(name, str):
            reads.add(("secret", GATEWAY_NAMESPACE, name))


def _destination_rule(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
    for _, name in credential_names(obj.spec):
        reads.add(("secret", obj.namespace, name))
    host = obj.spec.get("host")
    if not isinstance(host, str):
        return
    name = fqdn(host, obj.namespace)
    provides.add(("rule", name))
    if "*" in name:
        return
    _host_lookup(name, reads)
    parts = name.split(".")
    for subset in as_list(obj.spec.get("subsets")):
        labels = as_mapping(as_mapping(subset).get("labels"))
        if labels:  # a workload it selects carries each of them: one is enough to find it
            key = "app" if "app" in labels else min(labels)
            reads.add(("label", str(key), str(labels[key])))
        elif len(parts) > 1:  # selects what the Service at the host selects, in its namespace
            reads.add(("workload-ns", parts[1]))


def _virtual_service(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
    provides.add(("vs", obj.namespace, obj.key.name))
    for ref in as_list(obj.spec.get("gateways")):
        ns, _, name = str(ref).rpartition("/")
        provides.add(("binds", ns or obj.namespace, name))
        if ref != "mesh":
            reads.add(("gateway", ns or obj.namespace, name))
    if is_mesh_bound(obj.spec):
        claims = {("claim", fqdn(str(h), obj.namespace)) for h in obj.spec.get("hosts") or []}
        provides.update(claims)
        reads.update(claims)
        # check_wildcard_routes: its hosts known by name, or only by a wildcard entry
        reads.update(("host", p) for _, name in claims for p in host_patterns(name))
    if obj.spec.get("tcp") or obj.spec.get("tls"):  # mesh_l4_state: the Services' ports
        reads.update(("host", fqdn(str(h), obj.namespace)) for h in as_list(obj.spec.get("hosts")))
    for _, dest in destinations(obj.spec):
        host = dest.get("host")
        if isinstance(host, str):
            name = fqdn(host, obj.namespace)
            _host_lookup(name, reads)
            reads.update(("rule", p) for p in host_patterns(name))
    for rule in as_list(obj.spec.get("http")):
        target = as_mapping(as_mapping(rule).get("delegate"))
        if target:
            reads.add(("vs", str(target.get("namespace") or obj.namespace),
                       str(target.get("name"))))


def _envoy_filter(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
    """``check_envoy_filters``: a workload that carries its selector's labels (one is
    enough to find it); the gateway's labels are built in, no object's."""
    labels = selector_of(obj)
    if labels:
        key = "app" if "app" in labels else min(labels)
        reads.add(("label", key, labels[key]))


def _named(ref: str) -> Callable[[StateObject, set[Ref], set[Ref]], None]:
    """Objects looked up by (namespace, name) only: Secrets, ConfigMaps, AlertProviders."""
    def provide(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
        provides.add((ref, obj.namespace, obj.key.name))
    return provide


def _secret_ref(*path: str) -> Callable[[StateObject, set[Ref], set[Ref]], None]:
    """Objects that read a Secret of their namespace named at ``path`` in their spec."""
    def read(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
        value: Any = obj.spec
        for part in path:
            value = as_mapping(value).get(part)
        if isinstance(value, str):
            reads.add(("secret", obj.namespace, value))
    return read


def _alert_provider(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
    _named("alertprovider")(obj, provides, reads)
    _secret_ref("secretRef", "name")(obj, provides, reads)


def _peer_authentication(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
    reads.add(("kind", "PeerAuthentication"))  # which one is enforced depends on them all


def _request_authentication(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
    """The workloads it selects, and the policies that may select them too: its own
    namespace's and the root namespace's; one in the root namespace reaches everything."""
    # imported here, as security_state does: the package brings in the CA and cryptography
    from meshpilot.security.policy_scope import DEFAULT_ROOT_NAMESPACE

    provides.add(("ra-ns", obj.namespace))
    if obj.namespace == DEFAULT_ROOT_NAMESPACE:
        reads.update({("kind", "RequestAuthentication"), ("kind", "Deployment"),
                      ("kind", "WorkloadEntry")})
    else:
        reads.update({("ra-ns", obj.namespace), ("ra-ns", DEFAULT_ROOT_NAMESPACE),
                      ("workload-ns", obj.namespace)})


def _sidecar(obj: StateObject, provides: set[Ref], reads: set[Ref]) -> None:
    """``check_sidecar_ingress``: the workloads whose pods its ingress listeners serve
    (every one, a reference broader than the look-up), and with ``tls`` the
    PeerAuthentications that decide the ports' modes."""
    ingress = as_list(obj.spec.get("ingress"))
    if ingress:
        reads.update({("kind", "Deployment"), ("kind", "Rollout")})
    if any(as_mapping(listener).get("tls") for listener in ingress):
        reads.add(("kind", "PeerAuthentication"))  # the modes its tls depends on


_BY_KIND: Mapping[str, Callable[[StateObject, set[Ref], set[Ref]], None]] = MappingProxyType({
    "AlertProvider": _alert_provider,
    "Canary": _canary,
    "ConfigMap": _named("configmap"),
    "Deployment": _pod_owner,
    "DestinationRule": _destination_rule,
    "EnvoyFilter": _envoy_filter,
    "Gateway": _gateway,
    "HorizontalPodAutoscaler": _autoscaler,
    "MetricTemplate": _secret_ref("provider", "secretRef", "name"),
    "PeerAuthentication": _peer_authentication,
    "RequestAuthentication": _request_authentication,
    "Rollout": _pod_owner,
    "Secret": _named("secret"),
    "Service": _service,
    "ServiceEntry": _service_entry,
    "Sidecar": _sidecar,
    "VirtualService": _virtual_service,
    "WorkloadEntry": _workload_entry,
    "WorkloadGroup": _named("workloadgroup"),
})
