"""What the dashboard draws, from store objects, pods and telemetry rows; and when its
event stream speaks."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tests.builders import service, virtual_service, weighted

from meshpilot.api.identity import ObjectKey
from meshpilot.runtime import Pod
from meshpilot.server.dashboard import events, views
from meshpilot.store import StoredObject


def _stored(group: str, kind: str, body: dict[str, Any]) -> StoredObject:
    meta = body["metadata"]
    key = ObjectKey(group, kind, meta.get("namespace", "default"), meta["name"])
    return StoredObject(key, body, 1, 1)


def _pod(name: str, deployment: str, labels: dict[str, str], ready: bool = True) -> Pod:
    return Pod(name=name, namespace="default", deployment=deployment, labels=labels,
               ip="127.10.0.9", inbound=(), phase="Running", ready=ready, restarts=0,
               message="", template_hash="h", started_at=None, admin_socket="", node_id=name)


def test_workloads_by_version_in_their_service_with_the_split() -> None:
    pods = [_pod("a-1", "myapp-v1", {"app": "myapp", "version": "v1"}),
            _pod("a-2", "myapp-v1", {"app": "myapp", "version": "v1"}, ready=False),
            _pod("b-1", "myapp-v2", {"app": "myapp", "version": "v2"}),
            _pod("c-1", "lonely", {"app": "lonely"})]
    services = [_stored("", "Service", service("myapp", port=8080))]
    vs = [_stored("networking.istio.io", "VirtualService",
                  virtual_service("myapp", http=[weighted("myapp", {"v1": 90, "v2": 10})])),
          _stored("networking.istio.io", "VirtualService",  # a gateway's: not the mesh's
                  virtual_service("edge", hosts=["myapp"], gateways=["gw"],
                                  http=[weighted("myapp", {"v2": 100})]))]
    rows = [{"source_workload": "mesh-proxy", "source_workload_namespace": "default",
             "destination_workload": "myapp-v2", "destination_workload_namespace": "default",
             "destination_service_name": "myapp", "destination_version": "v2",
             "requests": 30, "errors": 3, "latencyMs": {"p99": 7.5}},
            {"source_workload": "mesh-proxy", "source_workload_namespace": "default",
             "destination_workload": "myapp-v1", "destination_workload_namespace": "default",
             "requests": 0}]
    g = views.graph(pods, services, vs, rows)
    by_id = {w["id"]: w for w in g["workloads"]}
    assert by_id["wl:default/myapp-v1"] | {} == {
        "id": "wl:default/myapp-v1", "namespace": "default", "name": "myapp-v1",
        "version": "v1", "ready": 1, "pods": 2, "service": "svc:default/myapp"}
    assert by_id["wl:default/myapp-v2"]["service"] == "svc:default/myapp"
    assert by_id["wl:default/lonely"]["service"] is None
    assert [r["text"] for r in g["splits"]["svc:default/myapp"]] == ["v1 90% / v2 10%"]
    [edge] = g["edges"]  # no requests in the window: no edge
    assert edge["source"] == "wl:default/mesh-proxy" and edge["target"] == "wl:default/myapp-v2"
    assert edge["successRate"] == 90.0 and edge["p99"] == 7.5
    assert edge["requestRate"] == 30 / views.WINDOW_SECONDS
    assert g["callers"] == [{"id": "wl:default/mesh-proxy", "name": "mesh-proxy"}]


def test_splits_name_other_hosts_and_default_a_lone_route_to_100() -> None:
    vs = _stored("networking.istio.io", "VirtualService", virtual_service("myapp", http=[
        {"name": "canary", "match": [{"headers": {"x": {"exact": "1"}}}],
         "route": [{"destination": {"host": "myapp-canary"}}]},
        {"route": [{"destination": {"host": "myapp-primary.default.svc.cluster.local"},
                    "weight": 80},
                   {"destination": {"host": "myapp-canary"}, "weight": 20}]}]))
    [first, last] = views.splits([vs])["svc:default/myapp"]
    assert (first["rule"], first["match"], first["text"]) == ("canary", True, "myapp-canary 100%")
    assert last["text"] == "myapp-primary 80% / myapp-canary 20%"


def test_mirrored_traffic_is_shown_as_such() -> None:
    """Istio's mirroring task: all traffic to v1, a copy of 50 % to v2 (mirrorPercentage);
    without a percentage every request is copied."""
    vs = _stored("networking.istio.io", "VirtualService", virtual_service("myapp", http=[
        {"route": [{"destination": {"host": "myapp", "subset": "v1"}, "weight": 100}],
         "mirror": {"host": "myapp", "subset": "v2"}, "mirrorPercentage": {"value": 50.0}}]))
    [rule] = views.splits([vs])["svc:default/myapp"]
    assert rule["text"] == "v1 100% · mirror v2 50%"
    assert rule["mirror"] == {"to": "v2", "subset": "v2", "percent": 50.0}
    whole = _stored("networking.istio.io", "VirtualService", virtual_service("myapp", http=[
        {"route": [{"destination": {"host": "myapp", "subset": "v1"}}],
         "mirror": {"host": "myapp", "subset": "v2"}}]))
    assert views.splits([whole])["svc:default/myapp"][0]["mirror"]["percent"] == 100.0


class _Watch:
    def __init__(self) -> None:
        self.pending = 0
        self.closed = False

    def get(self, timeout: float = 0) -> object | None:
        if self.pending:
            self.pending -= 1
            return object()
        return None

    def close(self) -> None:
        self.closed = True


class _Store:
    def __init__(self) -> None:
        self.w = _Watch()

    def watch(self, since: int | None = None) -> _Watch:
        return self.w


def test_the_stream_sends_on_change_only_when_the_picture_changed() -> None:
    store = _Store()
    state = {"n": 0}
    asked = []

    async def snapshot() -> dict[str, Any]:
        asked.append(1)
        return dict(state)

    async def run() -> list[bytes]:
        out = []
        gen = events.stream(store, snapshot)  # type: ignore[arg-type]
        out.append(await gen.__anext__())  # the first picture at once
        store.w.pending = 3  # three store changes, and the picture changed
        state["n"] = 1
        out.append(await asyncio.wait_for(gen.__anext__(), timeout=2))
        store.w.pending = 2  # changed again, but the picture is the same: nothing sent
        # cancelled when it times out: the generator is closed, its watch with it
        with contextlib.suppress(TimeoutError):
            out.append(await asyncio.wait_for(gen.__anext__(), timeout=0.8))
        return out

    assert asyncio.run(run()) == [events.sse("state", {"n": 0}), events.sse("state", {"n": 1})]
    assert len(asked) == 3  # the last change was looked at, and not sent
    assert store.w.closed


def test_config_lists_objects_by_kind_with_their_findings() -> None:
    vs = _stored("networking.istio.io", "VirtualService",
                 virtual_service("myapp", http=[weighted("myapp", {"v1": 100})]))
    svc = _stored("", "Service", service("myapp"))
    findings = [
        {"object": "VirtualService default/myapp", "code": "MP1001", "severity": "error",
         "path": "spec.hosts[0]", "message": "claimed twice", "file": "x.yaml"},
        {"object": "VirtualService default/gone", "code": "MP2001", "severity": "warning",
         "path": "", "message": "names nothing"},
    ]
    shown = views.config([vs, svc], findings)
    assert [(o["kind"], o["name"]) for o in shown["objects"]] == [
        ("Service", "myapp"), ("VirtualService", "myapp")]
    assert shown["objects"][0]["findings"] == []
    assert shown["objects"][1]["findings"] == [
        {"code": "MP1001", "severity": "error", "path": "spec.hosts[0]",
         "message": "claimed twice"}]
    assert [f["code"] for f in shown["unattached"]] == ["MP2001"]


def test_an_argo_rollout_is_drawn_as_a_card_with_its_step_and_runs() -> None:
    """An Argo Rollout as `rollout status` shows it, in the rollout card's shape: Argo's
    phase (Degraded drawn red as Failed), weights, step, its AnalysisRuns as checks."""
    view = {"namespace": "default", "name": "web", "status": "Degraded",
            "message": "RolloutAborted", "strategy": "Canary", "step": "1/4",
            "actualWeight": 0, "paused": False,
            "analysisRuns": [{"name": "web-abc-2", "phase": "Failed"}],
            "revisions": [{"podTemplateHash": "abc", "roles": ["stable"],
                           "images": ["demo:1"]}]}
    card = views.argo_card(view)
    assert (card["kind"], card["phase"], card["argoPhase"]) == ("Rollout", "Failed", "Degraded")
    assert (card["canaryWeight"], card["primaryWeight"], card["step"], card["steps"]) == (
        0, 100, 1, 4)
    assert card["checks"][0]["name"] == "analysis web-abc-2"
    assert card["checks"][0]["verdict"] == "fail"
    assert card["events"][0]["message"] == "RolloutAborted"
    assert card["history"][0]["outcome"] == "stable"
