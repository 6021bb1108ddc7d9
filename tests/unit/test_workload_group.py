"""WorkloadGroup is stored and validated like every kind; what the host agent does not do
is refused or warned about, and an entry a joined host registered is a sidecar-fronted
endpoint (Istio's WorkloadGroup and auto-registration model: the template's labels,
ports and serviceAccount become the entry's, the probe gates its health condition)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import by_name
from meshpilot.mesh.builder import build_snapshot
from meshpilot.validation import Plan, plan_apply

GROUP = {
    "metadata": {"labels": {"app": "reviews"}, "annotations": {"team": "books"}},
    "template": {"labels": {"app": "reviews", "version": "v2"}, "ports": {"http": 8080},
                 "serviceAccount": "reviews"},
    "probe": {"periodSeconds": 2, "httpGet": {"path": "/ready", "port": 9080}},
}


def group(spec: dict[str, Any], api_version: str = "networking.istio.io/v1") -> str:
    return yaml.safe_dump({"apiVersion": api_version, "kind": "WorkloadGroup",
                           "metadata": {"name": "reviews", "namespace": "shop"},
                           "spec": spec})


def plan(text: str) -> Plan:
    return plan_apply([("wg.yaml", text)], [])


def codes(p: Plan) -> list[tuple[str, str]]:
    return [(d.code, d.path or "") for d in p.diagnostics]


@pytest.mark.parametrize("version", ["v1alpha3", "v1beta1", "v1"])
def test_every_istio_version_is_accepted(version: str) -> None:
    p = plan(group(GROUP, f"networking.istio.io/{version}"))
    assert p.ok, [d.format() for d in p.errors]
    assert codes(p) == []
    assert by_name("wg").plural == "workloadgroups"


def test_template_address_is_refused() -> None:
    """Istio refuses an address in the template: each member brings its own."""
    spec = {**GROUP, "template": {**GROUP["template"], "address": "10.0.0.9"}}
    p = plan(group(spec))
    assert not p.ok
    assert any(d.code == "MP0017" and "address" in d.message for d in p.errors)


@pytest.mark.parametrize("probe", [
    {"periodSeconds": 2},
    {"httpGet": {"port": 80}, "tcpSocket": {"port": 80}},
])
def test_probe_needs_exactly_one_check(probe: dict[str, Any]) -> None:
    p = plan(group({**GROUP, "probe": probe}))
    assert not p.ok
    assert any("exactly one of httpGet, tcpSocket, exec or grpc" in d.message
               for d in p.errors)


def test_grpc_probe_is_refused_mp0065() -> None:
    p = plan(group({**GROUP, "probe": {"grpc": {"port": 9090}}}))
    assert not p.ok
    assert ("MP0065", "spec.probe.grpc") in codes(p)


def test_unknown_probe_field_names_path() -> None:
    p = plan(group({**GROUP, "probe": {"httpGet": {"port": 80, "pth": "/"}}}))
    assert not p.ok
    assert any(d.code == "MP0010" and "pth" in (d.path or "") for d in p.errors)


def test_network_and_locality_are_applied() -> None:
    """The template's locality and network are each joined entry's (Istio's
    auto-registration copies the template), so both are applied, not warned about: the
    network decides who reaches the host directly and who through its gateway."""
    spec = {**GROUP, "template": {**GROUP["template"], "network": "vpc-1",
                                  "locality": "eu/w/a"}}
    p = plan(group(spec))
    assert p.ok
    assert ("MP2016", "spec.template.network") not in codes(p)
    assert ("MP2016", "spec.template.locality") not in codes(p)


def entry(annotations: dict[str, str], status: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
        "metadata": {"name": "reviews-10.77.0.3", "namespace": "shop",
                     "annotations": annotations},
        "spec": {"address": "10.77.0.3", "labels": {"app": "reviews", "version": "v2"},
                 "ports": {"http": 8080}, "serviceAccount": "reviews"}}
    if status is not None:
        body["status"] = status
    return body


AUTO = {"istio.io/autoRegistrationGroup": "reviews"}


def test_hand_written_entry_with_service_account_is_still_refused() -> None:
    p = plan(yaml.safe_dump(entry({})))
    assert ("MP0046", "spec.serviceAccount") in codes(p)


def test_auto_registered_entry_keeps_its_identity() -> None:
    p = plan(yaml.safe_dump_all([entry(AUTO), yaml.safe_load(group(GROUP))]))
    assert p.ok, [d.format() for d in p.errors]
    assert codes(p) == []


def test_auto_registered_entry_without_its_group_is_warned_mp2043() -> None:
    p = plan(yaml.safe_dump(entry(AUTO)))
    assert p.ok
    assert codes(p) == [("MP2043", "metadata.annotations.istio.io/autoRegistrationGroup")]


SERVICE = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "reviews", "namespace": "shop"},
           "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 80,
                                                              "targetPort": "http"}]}}


def snapshot_of(*bodies: dict[str, Any]) -> Any:
    return build_snapshot(1, [(_key(b), b) for b in bodies])


def _key(body: dict[str, Any]) -> ObjectKey:
    group_name = body["apiVersion"].rpartition("/")[0]
    meta = body["metadata"]
    return ObjectKey(group_name, body["kind"], meta["namespace"], meta["name"])


@pytest.mark.parametrize(("status", "ready"), [
    (None, False),
    ({"conditions": [{"type": "Healthy", "status": "False"}]}, False),
    ({"conditions": [{"type": "Healthy", "status": "True"}]}, True),
])
def test_auto_registered_entry_is_a_sidecar_endpoint(status: dict[str, Any] | None,
                                                      ready: bool) -> None:
    """Ready only while its Healthy condition is True; reached over mTLS at its sidecar's
    inbound port (the template port) as the group's service account."""
    snap = snapshot_of(SERVICE, entry(AUTO, status))
    (ep,) = snap.endpoints["reviews.shop.svc.cluster.local"]
    assert (ep.address, ep.port, ep.has_sidecar, ep.service_account, ep.ready) == (
        "10.77.0.3", 8080, True, "reviews", ready)


def test_hand_written_entry_is_reached_directly() -> None:
    body = entry({})
    del body["spec"]["serviceAccount"]
    snap = snapshot_of(SERVICE, body)
    (ep,) = snap.endpoints["reviews.shop.svc.cluster.local"]
    assert (ep.has_sidecar, ep.ready) == (False, True)
