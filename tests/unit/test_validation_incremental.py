"""An apply judged around its change gives exactly the findings of the whole state.

The control plane judges an apply on the changed objects and their neighbourhood
(validation.state_index), and a delete on the objects that referred to what it deletes.
These tests build random small stores (every kind a cross-object check reads, with names,
hosts, labels and Secrets drawn from small pools so that they meet), apply a random
change, and compare with ``check_state`` over the whole state: the same diagnostics, in
the same order, for every change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import by_kind
from meshpilot.validation import Diagnostic, Severity, StateIndex, StateObject, check_state, codes
from meshpilot.validation.state_index import findings_about, judge_change, newly_broken

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NAMES = ("a", "b")
NAMESPACES = ("shop", "web", "istio-system")
HOSTS = ("a", "b", "a.shop", "b.web.svc", "a.shop.svc.cluster.local", "api.example.com",
         "*.example.com", "*", "*.shop")
CREDENTIALS = ("a", "b", "tls")
ISSUERS = ("https://one", "https://two")
STAMPS = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")

names = st.sampled_from(NAMES)
namespaces = st.sampled_from(NAMESPACES)
hosts = st.sampled_from(HOSTS)
apps, versions = st.sampled_from(("a", "x")), st.sampled_from(("v1", "v2"))
labels = st.fixed_dictionaries({}, optional={"app": apps, "version": versions})
some_labels = st.one_of(st.fixed_dictionaries({"app": apps}, optional={"version": versions}),
                        st.fixed_dictionaries({"version": versions}))
Spec = dict[str, Any]


def distinct(elements: st.SearchStrategy[Any], *, min_size: int = 0, max_size: int
             ) -> st.SearchStrategy[list[Any]]:
    """A list without repeats, in the order drawn."""
    return st.lists(elements, min_size=min_size, max_size=max_size).map(
        lambda items: list(dict.fromkeys(items)))


@st.composite
def _service(draw: st.DrawFn) -> Spec:
    return {"selector": draw(labels), "ports": [{"name": "http", "port": 8080}]}


@st.composite
def _service_entry(draw: st.DrawFn) -> Spec:
    spec: Spec = {"hosts": draw(distinct(hosts, min_size=1, max_size=2)),
                  "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                  "resolution": "STATIC"}
    if draw(st.booleans()):
        spec["endpoints"] = [{"address": "10.0.0.1", "labels": draw(labels)}]
    return spec


@st.composite
def _workload_entry(draw: st.DrawFn) -> Spec:
    return {"address": "10.0.0.2", "labels": draw(labels)}


@st.composite
def _pods(draw: st.DrawFn) -> Spec:
    container: Spec = {"name": "app", "image": "demo"}
    if draw(st.booleans()):
        kind = draw(st.sampled_from(("configMapKeyRef", "secretKeyRef")))
        container["env"] = [{"name": "X", "valueFrom": {kind: {
            "name": draw(names), "key": "k", "optional": draw(st.booleans())}}}]
    if draw(st.booleans()):
        kind = draw(st.sampled_from(("configMapRef", "secretRef")))
        container["envFrom"] = [{kind: {"name": draw(names)}}]
    if draw(st.booleans()):  # a port a Sidecar's ingress listener may name
        container["ports"] = [{"containerPort": draw(st.sampled_from((9500, 9600)))}]
    spec: Spec = {"containers": [container]}
    if draw(st.booleans()):
        spec["volumes"] = [draw(st.sampled_from((
            {"name": "v", "configMap": {"name": draw(names)}},
            {"name": "v", "secret": {"secretName": draw(names)}})))]
    return {"replicas": 1, "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": draw(labels)}, "spec": spec}}


@st.composite
def _rollout(draw: st.DrawFn) -> Spec:
    return {"selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": draw(labels)},
                         "spec": {"containers": [{"name": "app", "image": "demo"}]}},
            "strategy": {"canary": {"steps": [{"setWeight": 50}]}}}


@st.composite
def _canary(draw: st.DrawFn) -> Spec:
    service: Spec = {"port": 80}
    if draw(st.booleans()):
        service["name"] = draw(names)
    service["hosts"] = draw(distinct(hosts, max_size=2))
    if draw(st.booleans()):
        service["gateways"] = [draw(st.sampled_from(("mesh", "a", "istio-system/a")))]
    analysis: Spec = {"interval": "10s", "threshold": 2}
    if draw(st.booleans()):
        ref: Spec = {"name": draw(names)}
        if draw(st.booleans()):
            ref["namespace"] = draw(namespaces)
        analysis["alerts"] = [{"name": "on-call", "severity": "info", "providerRef": ref}]
    return {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": draw(names)},
            "service": service, "analysis": analysis}


@st.composite
def _alert_provider(draw: st.DrawFn) -> Spec:
    return {"type": "slack", "secretRef": {"name": draw(names)}}


@st.composite
def _metric_template(draw: st.DrawFn) -> Spec:
    return {"provider": {"type": "prometheus", "address": "http://127.0.0.1:9090",
                         "secretRef": {"name": draw(names)}},
            "query": "sum(up)"}


@st.composite
def _gateway(draw: st.DrawFn) -> Spec:
    servers = []
    for i in range(draw(st.integers(1, 2))):
        protocol = draw(st.sampled_from(("HTTP", "HTTPS", "TLS", "TCP")))
        server: Spec = {"port": {"number": 8000 + i, "name": f"p{i}", "protocol": protocol},
                        "hosts": draw(distinct(st.sampled_from(
                            ("*", "api.example.com", "./*", "shop/*", "*/a.shop")),
                            min_size=1, max_size=2))}
        if protocol in ("HTTPS", "TLS"):
            mode = draw(st.sampled_from(("SIMPLE", "MUTUAL", "PASSTHROUGH")))
            server["tls"] = {"mode": mode}
            if mode != "PASSTHROUGH":
                server["tls"]["credentialName"] = draw(st.sampled_from(CREDENTIALS))
        servers.append(server)
    return {"servers": servers}


def _no_spec() -> st.SearchStrategy[Spec]:
    """Secrets and ConfigMaps carry no spec (a Secret's type and keys are drawn in
    ``objects``)."""
    return st.just({})


@st.composite
def _destination(draw: st.DrawFn) -> Spec:
    dest: Spec = {"host": draw(hosts)}
    if draw(st.booleans()):
        dest["subset"] = draw(st.sampled_from(("v1", "v2")))
    return dest


@st.composite
def _virtual_service(draw: st.DrawFn) -> Spec:
    spec: Spec = {"hosts": draw(distinct(hosts, max_size=2))}
    gateways = draw(st.sampled_from(((), ("mesh",), ("a",), ("istio-system/a",),
                                     ("mesh", "shop/b"))))
    if gateways:
        spec["gateways"] = list(gateways)
    routes: list[Spec] = []
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.integers(0, 4)) == 0:
            target: Spec = {"name": draw(names)}
            if draw(st.booleans()):
                target["namespace"] = draw(namespaces)
            routes.append({"delegate": target})
            continue
        route: Spec = {"route": [{"destination": draw(_destination())}]}
        if draw(st.integers(0, 3)) == 0:
            route["mirror"] = draw(_destination())
        routes.append(route)
    if routes:
        spec["http"] = routes
    if draw(st.booleans()):
        spec["tcp"] = [{"route": [{"destination": draw(_destination())}]}]
    if draw(st.booleans()):
        spec["tls"] = [{"match": [{"sniHosts": [draw(st.sampled_from(
            ("api.example.com", "a.shop", "*.example.com")))]}],
            "route": [{"destination": draw(_destination())}]}]
    return spec


@st.composite
def _destination_rule(draw: st.DrawFn) -> Spec:
    spec: Spec = {"host": draw(hosts)}
    subsets = []
    for version in draw(distinct(st.sampled_from(("v1", "v2")), max_size=2)):
        subset: Spec = {"name": version, "labels": draw(labels)}
        if draw(st.integers(0, 3)) == 0:
            subset["trafficPolicy"] = {"tls": {"mode": "MUTUAL",
                                               "credentialName": draw(names)}}
        subsets.append(subset)
    if subsets:
        spec["subsets"] = subsets
    if draw(st.booleans()):
        spec["trafficPolicy"] = {"tls": {"mode": "SIMPLE", "credentialName": draw(names)}}
    return spec


@st.composite
def _peer_authentication(draw: st.DrawFn) -> Spec:
    spec: Spec = {"mtls": {"mode": draw(st.sampled_from(("STRICT", "PERMISSIVE")))}}
    if draw(st.booleans()):
        spec["selector"] = {"matchLabels": draw(some_labels)}
        if draw(st.booleans()):  # what a Sidecar ingress listener's tls needs
            spec["portLevelMtls"] = {"9500": {"mode": "DISABLE"}}
    return spec


@st.composite
def _request_authentication(draw: st.DrawFn) -> Spec:
    spec: Spec = {"jwtRules": [{"issuer": issuer} for issuer in draw(
        distinct(st.sampled_from(ISSUERS), min_size=1, max_size=2))]}
    if draw(st.booleans()):
        spec["selector"] = {"matchLabels": draw(some_labels)}
    return spec


@st.composite
def _sidecar(draw: st.DrawFn) -> Spec:
    """Ingress listeners that loop on some pods (MP2029) and not on others."""
    listeners = []
    for number in draw(distinct(st.sampled_from((9500, 9600)), min_size=1, max_size=2)):
        listener: Spec = {"port": {"number": number, "protocol": "HTTP"}}
        endpoint = draw(st.sampled_from((None, "127.0.0.1:9600", "127.0.0.1:8080")))
        if endpoint is not None:
            listener["defaultEndpoint"] = endpoint
        if draw(st.booleans()):  # presented only where the port's mTLS is DISABLE
            listener["tls"] = {"mode": "SIMPLE", "credentialName": "tls"}
        listeners.append(listener)
    spec: Spec = {"ingress": listeners}
    if draw(st.booleans()):
        spec["workloadSelector"] = {"labels": draw(some_labels)}
    return spec


@st.composite
def _envoy_filter(draw: st.DrawFn) -> Spec:
    spec: Spec = {"configPatches": [{"applyTo": "CLUSTER", "patch": {
        "operation": "MERGE", "value": {"connect_timeout": "1s"}}}]}
    if draw(st.booleans()):
        spec["workloadSelector"] = {"labels": draw(some_labels)}
    return spec


SPECS: dict[str, Callable[[], st.SearchStrategy[Spec]]] = {
    "AlertProvider": _alert_provider, "Canary": _canary, "ConfigMap": _no_spec,
    "Deployment": _pods, "DestinationRule": _destination_rule, "EnvoyFilter": _envoy_filter,
    "Gateway": _gateway,
    "MetricTemplate": _metric_template, "PeerAuthentication": _peer_authentication,
    "RequestAuthentication": _request_authentication, "Rollout": _rollout,
    "Secret": _no_spec, "Service": _service, "ServiceEntry": _service_entry,
    "Sidecar": _sidecar, "VirtualService": _virtual_service, "WorkloadEntry": _workload_entry,
}


KINDS = tuple(sorted(SPECS))
WORKLOADS = ("Deployment", "Rollout", "WorkloadEntry", "ServiceEntry")
FAMILIES = (
    ("VirtualService", "Service", "ServiceEntry", "Canary", "WorkloadEntry"),
    ("VirtualService", "DestinationRule", "Gateway"),
    ("DestinationRule", "Service", "Secret", "Canary", *WORKLOADS),
    ("Gateway", "Secret", "VirtualService"),
    ("Canary", "Service", "ServiceEntry", "AlertProvider", "Secret"),
    ("Deployment", "ConfigMap", "Secret", "MetricTemplate"),
    ("PeerAuthentication", "RequestAuthentication", "Deployment", "WorkloadEntry"),
    ("EnvoyFilter", "Deployment", "Rollout", "WorkloadEntry"),
    ("Sidecar", "Deployment", "Rollout", "PeerAuthentication"),
)
"""Kinds whose objects the checks look up in one another."""
some_kinds = st.one_of(st.sampled_from(FAMILIES), st.just(KINDS),
                       distinct(st.sampled_from(KINDS), min_size=1, max_size=3).map(tuple))
"""A family of kinds, every kind, or a few: stores where the objects one check reads meet
often, and stores of everything."""


@st.composite
def objects(draw: st.DrawFn, kind: str | None = None, kinds: tuple[str, ...] = KINDS
            ) -> StateObject:
    """One object as the store holds it (with its creationTimestamp)."""
    kind = kind or draw(st.sampled_from(kinds))
    info = by_kind(kind)
    key = ObjectKey(info.group, kind, draw(namespaces), draw(names))
    body: Spec = {"apiVersion": info.api_version(), "kind": kind,
                  "metadata": {"name": key.name, "namespace": key.namespace,
                               "creationTimestamp": draw(st.sampled_from(STAMPS))}}
    spec = draw(SPECS[kind]())
    if kind == "Secret":
        body["type"] = draw(st.sampled_from(("kubernetes.io/tls", "Opaque")))
        body["data"] = {k: "eA==" for k in draw(distinct(
            st.sampled_from(("tls.crt", "tls.key", "ca.crt", "address")), max_size=4))}
    elif kind == "ConfigMap":
        body["data"] = {"k": "v"}
    else:
        body["spec"] = spec
    return StateObject(key, body)


@st.composite
def stores(draw: st.DrawFn, min_size: int = 0, kinds: tuple[str, ...] | None = None
           ) -> list[StateObject]:
    """A store: objects by key, listed in key order as the store lists them."""
    objs = draw(st.lists(objects(kinds=kinds or draw(some_kinds)), min_size=min_size,
                         max_size=14))
    return sorted({o.key: o for o in objs}.values(), key=lambda o: o.key)


@st.composite
def applies(draw: st.DrawFn, kinds: tuple[str, ...] | None = None
            ) -> tuple[list[StateObject], list[StateObject]]:
    """A store and a change: new objects and new versions of stored ones."""
    kinds = kinds or draw(some_kinds)
    stored = draw(stores(kinds=kinds))
    change: dict[ObjectKey, StateObject] = {}
    for _ in range(draw(st.integers(1, 3))):
        if stored and draw(st.booleans()):  # a new version of a stored object
            old = draw(st.sampled_from(stored))
            new = draw(objects(old.key.kind))
            obj = StateObject(old.key, {**new.body, "metadata": old.body["metadata"]})
        else:
            obj = draw(objects(kinds=kinds))
        change[obj.key] = obj
    return stored, list(change.values())


def _as_change(stored: list[StateObject], change: list[StateObject]) -> list[StateObject]:
    """The change as plan_apply gives it: changed, keeping the stored creationTimestamp."""
    prior = {o.key: o for o in stored}
    return [StateObject(o.key, o.body, changed=True,
                        created=prior[o.key].creation_timestamp if o.key in prior else None)
            for o in change]


def whole_state(stored: list[StateObject], changed: list[StateObject]) -> list[Diagnostic]:
    """What an apply reported before: check_state over every object after the change."""
    state = {o.key: o for o in stored}
    state.update((o.key, o) for o in changed)
    return check_state(list(state.values()))


def whole_state_delete(stored: list[StateObject], deleted: set[ObjectKey],
                       before: list[Diagnostic] | None = None) -> list[Diagnostic]:
    """What a delete reported before: the findings of every remaining object after it
    that it had not before (``before``, when already judged), as warnings."""
    if before is None:
        before = check_state(stored, all_objects=True)
    old = {(d.code, d.object, d.path) for d in before}
    after = [o for o in stored if o.key not in deleted]
    return [replace(d, severity=Severity.WARNING) for d in check_state(after, all_objects=True)
            if (d.code, d.object, d.path) not in old]


def _index(stored: list[StateObject], draw: st.DrawFn | None = None) -> StateIndex:
    """The index as the control plane keeps it: put object by object, with earlier
    versions put and removed on the way (as the store's watch delivers them)."""
    index = StateIndex()
    for obj in stored:
        if draw is not None and draw(st.booleans()):
            index.put(obj.key, draw(objects(obj.key.kind)).body)  # an earlier version
            if draw(st.booleans()):
                index.remove(obj.key)
        index.put(obj.key, obj.body)
    if draw is not None:
        for extra in draw(st.lists(objects(), max_size=2)):  # created, then deleted
            if extra.key not in index:
                index.put(extra.key, extra.body)
                index.remove(extra.key)
    return index


def _dicts(found: list[Diagnostic]) -> list[dict[str, Any]]:
    return [d.to_dict() for d in found]


@SETTINGS
@given(case=applies(), data=st.data())
def test_an_apply_judged_around_its_change_finds_what_the_whole_state_finds(
        case: tuple[list[StateObject], list[StateObject]], data: st.DataObject) -> None:
    """Same diagnostics, same order, for any store and any change; the index built as the
    watch delivers changes (earlier versions replaced, objects removed)."""
    stored, change = case
    changed = _as_change(stored, change)
    index = _index(stored, data.draw)
    assert _dicts(judge_change(index, changed)) == _dicts(whole_state(stored, changed))
    for i, obj in enumerate(stored):  # and each stored object, applied to the others
        others = stored[:i] + stored[i + 1:]
        alone = _as_change(others, [obj])
        assert _dicts(judge_change(StateIndex.of(others), alone)) == _dicts(
            whole_state(others, alone)), obj.key


@SETTINGS
@given(stored=stores(min_size=1), data=st.data())
def test_a_delete_judged_around_what_it_deletes_finds_what_the_whole_state_finds(
        stored: list[StateObject], data: st.DataObject) -> None:
    """And ``describe`` of one object (findings_about) finds what the whole state finds
    about it."""
    deleted = set(data.draw(st.lists(st.sampled_from([o.key for o in stored]), min_size=1,
                                     max_size=3)))
    index = _index(stored, data.draw)
    assert _dicts(newly_broken(index, deleted)) == _dicts(whole_state_delete(stored, deleted))
    before = check_state(stored, all_objects=True)
    for obj in stored:  # and each object deleted alone, and described
        assert _dicts(newly_broken(index, [obj.key])) == _dicts(
            whole_state_delete(stored, {obj.key}, before)), obj.key
        assert _dicts(findings_about(index, obj.key)) == _dicts(
            [d for d in before if d.object == str(obj.key)]), obj.key


VS, DR, GW = "VirtualService", "DestinationRule", "Gateway"
CODES = (
    (codes.UNKNOWN_SUBSET, (VS, DR)), (codes.HOST_CONFLICT, (VS,)),
    (codes.GATEWAY_BAD_CREDENTIAL, (GW, "Secret")),
    (codes.CANARY_HOST_CLAIM, ("Canary", "Service", "ServiceEntry")),
    (codes.UNKNOWN_HOST, (VS,)), (codes.UNKNOWN_GATEWAY, (VS,)), (codes.DR_UNKNOWN_HOST, (DR,)),
    (codes.SUBSET_NO_WORKLOAD, (DR, "Service", "Deployment")),
    (codes.GATEWAY_NO_CREDENTIAL, (GW,)), (codes.PASSTHROUGH_NO_ROUTE, (GW, VS)),
    (codes.TCP_SERVER_NO_ROUTE, (GW, VS)), (codes.DR_NO_CREDENTIAL, (DR, "Secret")),
    (codes.DELEGATE_UNUSABLE, (VS,)), (codes.POD_CONFIG_MISSING, ("Deployment", "ConfigMap")),
    (codes.TEMPLATE_SECRET_MISSING, ("MetricTemplate", "Secret")),
    (codes.ALERT_PROVIDER_MISSING, ("Canary", "AlertProvider", "Secret")),
    (codes.PEER_AUTHN_CONFLICT, ("PeerAuthentication",)),
    (codes.PEER_AUTHN_ROOT_SELECTOR, ("PeerAuthentication",)),
    (codes.DUPLICATE_ISSUER, ("RequestAuthentication", "Deployment", "WorkloadEntry")),
    (codes.ENVOY_FILTER_NO_WORKLOAD, ("EnvoyFilter", "Deployment")),
    (codes.SIDECAR_INGRESS_LOOP, ("Sidecar", "Deployment")),
    (codes.SIDECAR_INGRESS_TLS, ("Sidecar", "Deployment", "PeerAuthentication")),
)
"""Each cross-object code, and the kinds whose objects meet to give it."""


@pytest.mark.parametrize(("code", "kinds"), CODES, ids=[c.code for c, _ in CODES])
def test_the_random_changes_reach_every_cross_object_check(code: codes.Code,
                                                           kinds: tuple[str, ...]) -> None:
    """Not vacuous: for each cross-object code, the changes drawn above (from stores of
    the kinds it involves, as ``some_kinds`` draws them) include one that the whole
    state reports it for, and the incremental judgement agrees on it."""
    def finds(case: tuple[list[StateObject], list[StateObject]]) -> bool:
        stored, change = case
        return code.code in {d.code for d in whole_state(stored, _as_change(stored, change))}

    stored, change = find(applies(kinds), finds, settings=settings(
        max_examples=2000, deadline=None, phases=[Phase.generate], database=None,
        suppress_health_check=list(HealthCheck)))
    changed = _as_change(stored, change)
    assert _dicts(judge_change(_index(stored), changed)) == _dicts(whole_state(stored, changed))


def test_a_change_is_judged_against_its_neighbourhood_only() -> None:
    """The point of the index: a ConfigMap applied to a store of unrelated Services and
    routes is judged against nothing else, and a route against its own host's objects."""
    stored = []
    for i in range(200):
        for kind, spec in (("Service", {"selector": {"app": f"s{i}"}}),
                           ("VirtualService", {"hosts": [f"s{i}"], "http": [
                               {"route": [{"destination": {"host": f"s{i}"}}]}]})):
            info = by_kind(kind)
            key = ObjectKey(info.group, kind, "shop", f"s{i}")
            stored.append(StateObject(key, {"apiVersion": info.api_version(), "kind": kind,
                                            "metadata": {"name": key.name,
                                                         "namespace": "shop"},
                                            "spec": spec}))
    index = StateIndex.of(stored)
    from meshpilot.validation.state_index import StateView

    config = StateObject(ObjectKey("", "ConfigMap", "shop", "c"), {"data": {}}, changed=True)
    assert StateView(index, {config.key: config}).around([config.key]) == [config]
    route = replace(stored[1], changed=True)
    assert route.key.kind == "VirtualService"
    around = StateView(index, {route.key: route}).around([route.key])
    assert sorted(str(o.key) for o in around) == ["Service shop/s0", "VirtualService shop/s0"]


def _obj(kind: str, ns: str, name: str, spec: Spec | None = None, **top: Any) -> StateObject:
    info = by_kind(kind)
    body: Spec = {"apiVersion": info.api_version(), "kind": kind,
                  "metadata": {"name": name, "namespace": ns}, **top}
    if spec is not None:
        body["spec"] = spec
    return StateObject(ObjectKey(info.group, kind, ns, name), body)


def _entry(ns: str, name: str, hosts: list[str]) -> StateObject:
    return _obj("ServiceEntry", ns, name, {"hosts": hosts, "resolution": "STATIC", "ports": [
        {"number": 80, "name": "http", "protocol": "HTTP"}]})


def _route(ns: str, name: str, host: str, subset: str | None = None, **spec: Any
           ) -> StateObject:
    dest: Spec = {"host": host, **({"subset": subset} if subset else {})}
    return _obj("VirtualService", ns, name, {"http": [{"route": [{"destination": dest}]}],
                                             **spec})


def _https_gateway(credential: str) -> StateObject:
    return _obj("Gateway", "istio-system", "gw", {"servers": [{
        "port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"],
        "tls": {"mode": "SIMPLE", "credentialName": credential}}]})


def _pods(ns: str, name: str, labels: dict[str, str], **pod: Any) -> StateObject:
    return _obj("Deployment", ns, name, {"selector": {"matchLabels": labels}, "template": {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "app", "image": "demo"}], **pod}}})


def _jwt(ns: str, name: str) -> StateObject:
    return _obj("RequestAuthentication", ns, name, {"jwtRules": [{"issuer": "https://one"}]})


ISTIO_ROUTED: Spec = {"canaryService": "c", "stableService": "s", "trafficRouting": {
    "istio": {"virtualService": {"name": "vs"}}}}
WORKLOAD_V1 = _obj("WorkloadEntry", "web", "w", {"address": "10.0.0.2",
                                                 "labels": {"version": "v1"}})
CASES: dict[str, tuple[list[StateObject], StateObject, list[str]]] = {
    # (stored objects, the changed one, the codes the whole state reports)
    "a subset's workload, found by its labels alone": (
        [_entry("shop", "e", ["api.example.com"]), WORKLOAD_V1],
        _obj("DestinationRule", "shop", "d", {"host": "api.example.com", "subsets": [
            {"name": "v1", "labels": {"version": "v1"}}]}), []),
    "a subset without labels: the workloads the Service selects": (
        [_obj("Service", "shop", "a", {"selector": {"app": "x"}}),
         _pods("shop", "p", {"app": "x"})],
        _obj("DestinationRule", "shop", "d", {"host": "a", "subsets": [{"name": "v1"}]}), []),
    "a Gateway's credential Secret that cannot serve": (
        [_obj("Secret", "istio-system", "tls", type="Opaque", data={"k": "eA=="})],
        _https_gateway("tls"), ["MP1003"]),
    "a Secret a stored Gateway serves with": (
        [_https_gateway("tls")],
        _obj("Secret", "istio-system", "tls", type="Opaque", data={"k": "eA=="}), ["MP1003"]),
    "a route's host behind a ServiceEntry for every host": (
        [_entry("web", "any", ["*"])],
        _route("shop", "r", "api.example.com", hosts=["api.example.com"],
               gateways=["istio-system/gw"]), ["MP2004"]),
    "a subset of a wildcard DestinationRule": (
        [_entry("shop", "e", ["api.example.com"]), WORKLOAD_V1,
         _obj("DestinationRule", "shop", "d", {"host": "*.example.com", "subsets": [
             {"name": "v1", "labels": {"version": "v1"}}]})],
        _route("shop", "r", "api.example.com", "v1"), []),
    "a DestinationRule's client credential": (
        [_obj("Secret", "shop", "c", data={"cert": "eA=="})],
        _obj("DestinationRule", "shop", "d", {"host": "api.example.com", "trafficPolicy": {
            "tls": {"mode": "MUTUAL", "credentialName": "c"}}}), ["MP2003"]),
    "a pod's ConfigMap": (
        [_obj("ConfigMap", "shop", "cfg", data={"k": "v"})],
        _pods("shop", "p", {"app": "x"}, volumes=[{"name": "v", "configMap": {"name": "cfg"}}]),
        []),
    "a root-namespace RequestAuthentication reaches every namespace's workloads": (
        [_jwt("shop", "local"), _pods("shop", "p", {"app": "x"})],
        _jwt("istio-system", "root"), ["MP2009"]),
    "a Canary's host that is another Service's": (
        [_obj("Service", "shop", "b", {"selector": {"app": "b"}})],
        _obj("Canary", "shop", "c", {"targetRef": {"apiVersion": "apps/v1",
                                                   "kind": "Deployment", "name": "a"},
                                     "service": {"port": 80, "hosts": ["b.shop"]},
                                     "analysis": {"interval": "10s"}}), ["MP1004"]),
    "a Canary alert's provider": (
        [_obj("AlertProvider", "web", "p", {"type": "slack", "secretRef": {"name": "s"}})],
        _obj("Canary", "shop", "c", {"targetRef": {"apiVersion": "apps/v1",
                                                   "kind": "Deployment", "name": "a"},
                                     "service": {"port": 80}, "analysis": {
                                         "interval": "10s", "alerts": [{
                                             "name": "x", "severity": "info",
                                             "providerRef": {"name": "p", "namespace": "web"}}]}}),
        []),
    "a delegate": (
        [_route("shop", "d", "api.example.com", tcp=[])],
        _obj("VirtualService", "shop", "root", {"hosts": ["api.example.com"],
                                                "http": [{"delegate": {"name": "d"}}]}), []),
    "a joined host's entry and its WorkloadGroup": (
        [_obj("WorkloadGroup", "web", "g", {"template": {"serviceAccount": "web"}})],
        _obj("WorkloadEntry", "web", "g-10.0.0.9", {"address": "10.0.0.9"},
             metadata={"name": "g-10.0.0.9", "namespace": "web",
                       "annotations": {"istio.io/autoRegistrationGroup": "g"}}), []),
    "a Rollout's AnalysisTemplate": (
        [_obj("AnalysisTemplate", "shop", "rate", {"metrics": []})],
        _obj("Rollout", "shop", "r", {"strategy": {"canary": {**ISTIO_ROUTED, "steps": [
            {"analysis": {"templates": [{"templateName": "rate"}]}}]}}}), []),
    "a Rollout's ClusterAnalysisTemplate": (
        [_obj("ClusterAnalysisTemplate", "", "rate", {"metrics": []})],
        _obj("Rollout", "shop", "r", {"strategy": {"canary": {**ISTIO_ROUTED, "analysis": {
            "templates": [{"templateName": "rate", "clusterScope": True}]}}}}), []),
    "an autoscaler's Deployment": (
        [_pods("shop", "p", {"app": "x"})],
        _obj("HorizontalPodAutoscaler", "shop", "h", {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "p"},
            "maxReplicas": 3}), ["MP2048"]),
    "a Canary's autoscaler": (
        [_obj("HorizontalPodAutoscaler", "shop", "h", {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "a"},
            "maxReplicas": 3, "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "AverageValue", "averageValue": "1"}}}]})],
        _obj("Canary", "shop", "c", {"targetRef": {"apiVersion": "apps/v1",
                                                   "kind": "Deployment", "name": "a"},
                                     "autoscalerRef": {"apiVersion": "autoscaling/v2",
                                                       "kind": "HorizontalPodAutoscaler",
                                                       "name": "h"},
                                     "service": {"port": 80},
                                     "analysis": {"interval": "10s"}}), []),
    "a Sidecar's ingress tls, presented where a PeerAuthentication disables mTLS": (
        [_obj("Sidecar", "shop", "s", {"workloadSelector": {"labels": {"app": "x"}},
                                       "ingress": [{"port": {"number": 9500},
                                                    "defaultEndpoint": "127.0.0.1:8080",
                                                    "tls": {"mode": "SIMPLE",
                                                            "credentialName": "tls"}}]}),
         _obj("PeerAuthentication", "shop", "pa", {"selector": {"matchLabels": {"app": "x"}},
                                                   "portLevelMtls": {
                                                       "9500": {"mode": "DISABLE"}}})],
        _pods("shop", "p", {"app": "x"}), []),
    "a Sidecar's ingress listener on a port its workload does not declare": (
        [_obj("Sidecar", "shop", "s", {"workloadSelector": {"labels": {"app": "x"}},
                                       "ingress": [{"port": {"number": 9500}}]})],
        _pods("shop", "p", {"app": "x"}), []),
    "a mesh host another route claims": (
        [_route("shop", "a", "api.example.com", hosts=["a"])],
        _route("shop", "b", "api.example.com", hosts=["a.shop.svc.cluster.local"]),
        ["MP1002", "MP2001"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_kind_of_reference_is_followed(
        case: tuple[list[StateObject], StateObject, list[str]]) -> None:
    """One case per reference a check follows (what random stores reach only rarely): the
    neighbourhood holds the object that decides the finding, so the findings agree."""
    stored, change, expected = case
    stored = sorted(stored, key=lambda o: o.key)
    changed = _as_change(stored, [change])
    whole = whole_state(stored, changed)
    assert [d.code for d in whole] == expected
    assert _dicts(judge_change(StateIndex.of(stored), changed)) == _dicts(whole)
    for obj in stored:  # and deleting what decides it
        assert _dicts(newly_broken(StateIndex.of(stored), [obj.key])) == _dicts(
            whole_state_delete(stored, {obj.key}))
    after = sorted([*(o for o in stored if o.key != change.key), change], key=lambda o: o.key)
    every = check_state(after, all_objects=True)
    for obj in after:  # and describing each object once the change is stored
        assert _dicts(findings_about(StateIndex.of(after), obj.key)) == _dicts(
            [d for d in every if d.object == str(obj.key)]), obj.key


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(stored=stores(min_size=1), data=st.data())
def test_the_index_holds_nothing_for_what_is_gone(stored: list[StateObject],
                                                  data: st.DataObject) -> None:
    """Churn does not grow it: once every object is removed (after versions replaced
    along the way), no reference, table entry or shared tuple is left."""
    index = _index(stored, data.draw)
    held = {ref for obj in stored for ref in (*index.refs(obj.key).provides,
                                               *index.refs(obj.key).reads)}
    assert set(index._canonical) == held == set(index._providers) | set(index._readers)
    for obj in stored:
        index.remove(obj.key)
    assert len(index) == 0
    assert (index._providers, index._readers, index._canonical) == ({}, {}, {})
