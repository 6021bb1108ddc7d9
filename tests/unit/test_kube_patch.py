"""PATCH bodies as kubectl sends them, applied to a stored object."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshpilot.server.kube_patch import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC,
    PatchError,
    apply_patch,
)

DEPLOYMENT: dict[str, Any] = {
    "metadata": {"name": "app", "labels": {"app": "app", "version": "v1"}},
    "spec": {"replicas": 2, "template": {"spec": {"containers": [
        {"name": "app", "args": ["--version", "v1"],
         "ports": [{"name": "http", "containerPort": 8080}]},
        {"name": "side", "args": []},
    ]}}},
}


def patched(patch: Any, content_type: str = STRATEGIC) -> dict[str, Any]:
    return apply_patch(DEPLOYMENT, json.dumps(patch).encode(), content_type)


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"]


def test_strategic_merge_merges_containers_by_name_and_replaces_scalar_lists() -> None:
    out = patched({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}, {"name": "side"}],
        "containers": [{"name": "app", "args": ["--version", "v2"]}]}}}})
    assert containers(out)[0] == {"name": "app", "args": ["--version", "v2"],
                                  "ports": [{"name": "http", "containerPort": 8080}]}
    assert containers(out)[1] == {"name": "side", "args": []}
    assert containers(DEPLOYMENT)[0]["args"] == ["--version", "v1"]  # not modified


def test_strategic_merge_deletes_adds_and_orders_by_merge_key() -> None:
    out = patched({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "new"}, {"name": "app"}],
        "containers": [{"name": "side", "$patch": "delete"}, {"name": "new", "args": []}]}}}})
    assert [c["name"] for c in containers(out)] == ["new", "app"]


def test_strategic_merge_null_removes_and_retain_keys_keeps_only_those() -> None:
    out = patched({"metadata": {"labels": {"version": None}},
                   "spec": {"$retainKeys": ["template"], "template": {}}})
    assert out["metadata"]["labels"] == {"app": "app"}
    assert set(out["spec"]) == {"template"}


def test_strategic_merge_replace_directive_replaces_a_map() -> None:
    out = patched({"metadata": {"labels": {"$patch": "replace", "tier": "web"}}})
    assert out["metadata"]["labels"] == {"tier": "web"}


def test_merge_patch_replaces_lists_whole() -> None:
    out = patched({"spec": {"template": {"spec": {"containers": [{"name": "only"}]}}}},
                  MERGE_PATCH)
    assert containers(out) == [{"name": "only"}]


def test_json_patch() -> None:
    out = patched([{"op": "replace", "path": "/spec/replicas", "value": 5}], JSON_PATCH)
    assert out["spec"]["replicas"] == 5
    with pytest.raises(PatchError):
        patched([{"op": "remove", "path": "/spec/nothere"}], JSON_PATCH)


def test_unknown_content_type_is_415() -> None:
    with pytest.raises(PatchError) as exc:
        patched({}, "application/apply-patch+yaml")
    assert exc.value.status == 415
