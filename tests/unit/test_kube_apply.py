"""Server-side apply's merge, ownership and conflicts (meshpilot.server.kube_apply), and
the field paths they are made of.

The cases follow the API server's documented server-side apply behaviour
(kubernetes.io/docs/reference/using-api/server-side-apply): an applier owns the fields
it sets, a changed field owned by another manager is a conflict unless forced (then it
changes hands), equal values are shared without conflict, a field an applier stops
setting is removed unless someone else owns it, and lists of containers merge by name.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from meshpilot.server import kube_fieldsets as fs
from meshpilot.server.kube_apply import (
    ApplyConflicts,
    BadApply,
    applied_object,
    manager_of,
    server_side_apply,
    track_update,
)


def vs(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "r", "namespace": "default"}, "spec": spec}


def deployment(image: str, env: list[dict[str, str]] | None = None,
               replicas: int | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": image}
    if env is not None:
        container["env"] = env
    spec: dict[str, Any] = {"template": {"spec": {"containers": [container]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "default"}, "spec": spec}


def owners(body: dict[str, Any]) -> dict[str, set[str]]:
    return {e["manager"]: {fs.shown(p) for p in fs.from_fields_v1(e["fieldsV1"])}
            for e in body["metadata"].get("managedFields", [])}


def test_a_create_owns_every_field_it_sets_but_identity_and_status() -> None:
    body = server_side_apply(None, vs(hosts=["r"], gateways=["g"]), "alice", force=False)
    assert owners(body) == {"alice": {".spec.hosts", ".spec.gateways"}}
    entry = body["metadata"]["managedFields"][0]
    assert (entry["operation"], entry["apiVersion"], entry["fieldsType"]) == (
        "Apply", "networking.istio.io/v1", "FieldsV1")


def test_a_changed_field_of_another_manager_conflicts_unless_forced() -> None:
    live = server_side_apply(None, vs(hosts=["r"], gateways=["g"]), "alice", force=False)
    with pytest.raises(ApplyConflicts) as caught:
        server_side_apply(live, vs(hosts=["r"], gateways=["other"]), "bob", force=False)
    assert str(caught.value) == ('Apply failed with 1 conflict: conflict with "alice" '
                                 "using networking.istio.io/v1: .spec.gateways")
    assert caught.value.causes() == [{"reason": "FieldManagerConflict",
                                      "field": ".spec.gateways",
                                      "message": 'conflict with "alice" using '
                                                 "networking.istio.io/v1"}]
    forced = server_side_apply(live, vs(hosts=["r"], gateways=["other"]), "bob", force=True)
    assert forced["spec"]["gateways"] == ["other"]
    # the equal hosts are shared, the forced gateways move to bob
    assert owners(forced) == {"alice": {".spec.hosts"}, "bob": {".spec.hosts", ".spec.gateways"}}


def test_a_field_the_applier_drops_is_removed_unless_another_owns_it() -> None:
    live = server_side_apply(None, vs(hosts=["r"], gateways=["g"], exportTo=["."]),
                             "alice", force=False)
    live = server_side_apply(live, vs(hosts=["r"], exportTo=["."]), "bob", force=False)
    dropped = server_side_apply(live, vs(hosts=["r"]), "alice", force=False)
    assert "gateways" not in dropped["spec"]
    assert dropped["spec"]["exportTo"] == ["."]  # bob still sets it
    assert owners(dropped)["alice"] == {".spec.hosts"}


def test_containers_merge_by_name_and_env_by_name() -> None:
    live = server_side_apply(None, deployment("v1", [{"name": "A", "value": "1"}]),
                             "alice", force=False)
    sidecar = deployment("v1")
    sidecar["spec"]["template"]["spec"]["containers"][0] = {
        "name": "app", "env": [{"name": "B", "value": "2"}]}
    both = server_side_apply(live, sidecar, "bob", force=False)
    container = both["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "v1"
    assert container["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert '.spec.template.spec.containers[name="app"].env[name="B"].value' in owners(both)["bob"]


def test_an_update_takes_the_fields_it_changes_without_conflict() -> None:
    """kubectl scale or edit (operation Update) takes a field from an applier; that
    applier's next apply of another value then conflicts with the updater."""
    live = server_side_apply(None, deployment("v1", replicas=2), "alice", force=False)
    scaled = dict(live, spec={**live["spec"], "replicas": 3})
    scaled = track_update(live, scaled, "kubectl-scale", now="2026-01-01T00:00:00Z")
    assert owners(scaled)["kubectl-scale"] == {".spec.replicas"}
    assert ".spec.replicas" not in owners(scaled)["alice"]
    expected = re.escape('"kubectl-scale" using apps/v1: .spec.replicas')
    with pytest.raises(ApplyConflicts, match=expected):
        server_side_apply(scaled, deployment("v1", replicas=2), "alice", force=False)


def test_an_unchanged_apply_keeps_the_entry_time() -> None:
    first = server_side_apply(None, vs(hosts=["r"]), "alice", force=False,
                              now="2026-01-01T00:00:00Z")
    again = server_side_apply(first, vs(hosts=["r"]), "alice", force=False,
                              now="2026-02-02T00:00:00Z")
    assert again == first


def test_fields_v1_round_trips_and_marks_parents() -> None:
    paths = {("f:spec", "f:a"), ("f:spec", 'k:{"name":"x"}'),
             ("f:spec", 'k:{"name":"x"}', "f:name")}
    tree = fs.to_fields_v1(paths)
    assert tree == {"f:spec": {"f:a": {}, 'k:{"name":"x"}': {".": {}, "f:name": {}}}}
    assert fs.from_fields_v1(tree) == paths


def test_an_apply_body_must_name_its_type_and_leave_managed_fields_out() -> None:
    assert applied_object(b"apiVersion: v1\nkind: Service\n")["kind"] == "Service"
    with pytest.raises(BadApply, match="no kind"):
        applied_object(b"apiVersion: v1\n")
    with pytest.raises(BadApply, match="managedFields"):
        applied_object(b"apiVersion: v1\nkind: Service\nmetadata: {managedFields: []}\n")


def test_the_manager_defaults_to_the_clients_name() -> None:
    assert manager_of(None, "kubectl/v1.32.4 (linux/amd64)") == "kubectl"
    assert manager_of("mine", "kubectl/v1.32.4") == "mine"


def test_the_first_server_side_apply_after_kubectl_apply_takes_its_fields() -> None:
    """The API server's last-applied upgrade: conflicts only with kubectl's client-side
    manager are resolved by taking over what the last-applied annotation holds."""
    import json

    from meshpilot.server.kube_apply import LAST_APPLIED, apply_upgrading

    first = vs(hosts=["r"], gateways=["g"])
    live = dict(first, metadata={**first["metadata"],
                                 "annotations": {LAST_APPLIED: json.dumps(first)}})
    live = track_update(None, live, "kubectl-client-side-apply")
    upgraded = apply_upgrading(live, vs(hosts=["r"], gateways=["h"]), "kubectl", force=False)
    assert upgraded["spec"]["gateways"] == ["h"]
    assert ".spec.gateways" in owners(upgraded)["kubectl"]
    # a field another tool changed since still conflicts
    edited = track_update(upgraded, vs(hosts=["r"], gateways=["x"]), "kubectl-edit")
    with pytest.raises(ApplyConflicts, match="kubectl-edit"):
        apply_upgrading(edited, vs(hosts=["r"], gateways=["h2"]), "kubectl", force=False)
