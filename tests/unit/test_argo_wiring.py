"""Argo Rollouts in the control plane: the real delivery loop over a real store steps a
Rollout on its own worker, keeps its status with PutStatus, answers commands through the
rollout API, and deletes its revisions when it is deleted (as Argo's ReplicaSets go with
their Rollout)."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.testclient import TestClient
from tests.unit.argo_harness import DR, NAME, VS, destination_rule, rollout, virtual_service
from tests.unit.test_delivery_wiring import wait_for

from meshpilot.server.config_service import ConfigService
from meshpilot.server.delivery_wiring import DeliveryLoop, StoreWriter, TelemetryTraffic
from meshpilot.server.rollout_api import RolloutAPI
from meshpilot.store import SqliteStore

API = "/apis/meshpilot.io/v1/namespaces/default/rollouts"


def test_the_loop_runs_a_rollout_and_its_commands_and_cleans_up(store: SqliteStore) -> None:
    writer = StoreWriter(ConfigService(store))
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME},
               "spec": {"selector": {"app": NAME}, "ports": [{"name": "http", "port": 80}]}}
    writer.apply([service, virtual_service(), destination_rule(), rollout("v1")])
    loop = DeliveryLoop(store, lambda: None, TelemetryTraffic(lambda: None), lambda _: None,
                        mesh_proxy="http://127.0.0.1:9", loadtester_port=0,
                        tick_seconds=0.05)
    loop.start()
    try:
        def revisions() -> set[str]:
            return {o.key.name for o in store.list(kind="Deployment")}

        def status() -> dict[str, object]:
            obj = store.list(kind="Rollout")[0]
            return obj.body.get("status") or {}

        wait_for("the first revision", lambda: len(revisions()) == 1)
        wait_for("the status", lambda: status().get("stableRS"))
        (revision,) = revisions()
        assert revision == f"{NAME}-{status()['stableRS']}"
        # no runtime here: its pods are never ready, so it is still Progressing
        assert status()["phase"] == "Progressing"
        rule = store.list(kind="DestinationRule")[0].body
        assert rule["metadata"]["name"] == DR
        assert {s["labels"].get("rollouts-pod-template-hash") for s in
                rule["spec"]["subsets"]} == {status()["stableRS"]}
        assert store.list(kind="VirtualService")[0].body["metadata"]["name"] == VS
        assert loop.argo_workers.keys() == [("default", NAME)]

        app = Starlette(routes=RolloutAPI(store, loop.controller, loop.argo).routes())
        with TestClient(app) as client:
            refused = client.post(f"{API}/{NAME}/promote")
            assert refused.status_code == 409, refused.text
            assert "fully promoted" in refused.json()["message"]
            assert client.post(f"{API}/nope/promote").status_code == 404
            # undo's toRevision (the plugin's --to-revision): a number, for undo only
            bad = client.post(f"{API}/{NAME}/undo?toRevision=two")
            assert bad.status_code == 400 and "not a revision number" in bad.json()["message"]
            assert client.post(f"{API}/{NAME}/abort?toRevision=1").status_code == 400
            missing = client.post(f"{API}/{NAME}/undo?toRevision=7")
            assert missing.status_code == 409, missing.text
            assert "unable to find revision 7 in the history (kept: 1)" in (
                missing.json()["message"])

        writer.delete("default", [("Rollout", NAME)])
        wait_for("the revision deleted", lambda: revisions() == set())
        wait_for("the worker retired", lambda: loop.argo_workers.keys() == [])
    finally:
        began = time.monotonic()
        loop.stop()
        assert time.monotonic() - began < 10.0
