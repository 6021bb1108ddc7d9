"""A rollout step is one store commit: the Canary's status and the generated objects that
changed land together (issue 13: a rollback's route change no longer waits for a
separate status commit first, and a crash cannot leave one without the other).

Tick by tick with the in-memory cluster, then against the real SQLite and etcd stores through the
one config path. The status after a fail-fast rollback follows Flagger's: phase Failed,
the canary's weight 0 and the reason in the last condition's message."""

from __future__ import annotations

import copy

import pytest
from tests.builders import canary as canary_body
from tests.unit.rollout_harness import NAME, Harness
from tests.unit.test_delivery_wiring import deployment

from meshpilot.api.identity import ObjectKey
from meshpilot.delivery import WriteError
from meshpilot.delivery.providers import Sample
from meshpilot.server.config_service import ConfigService
from meshpilot.server.delivery_wiring import StoreWriter
from meshpilot.store import ConfigStore


def at_first_weight(h: Harness) -> None:
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.canary_weight_routed() == 10)


def test_a_fail_fast_rollback_writes_its_status_and_route_in_one_commit() -> None:
    h = Harness({"threshold": 1})
    at_first_weight(h)
    before = len(h.cluster.writes)
    h.metrics.success[NAME] = Sample(50.0, 6)
    h.tick(dt=1.0)
    assert h.phase == "Failed" and h.canary_weight_routed() == 0
    index, status = h.cluster.combined[-1]
    assert index >= before, "the rollback's route was not written with its status"
    routed = [o for o in h.cluster.writes[index] if o["kind"] == "VirtualService"]
    assert routed, h.cluster.writes[index]
    weights = {d["destination"]["host"]: d.get("weight", 0)
               for d in routed[0]["spec"]["http"][0]["route"]}
    assert weights[f"{NAME}-canary"] == 0 and weights[f"{NAME}-primary"] == 100
    assert status["phase"] == "Failed" and status["canaryWeight"] == 0
    assert "fail-fast" in status["conditions"][-1]["message"]


def test_a_step_whose_objects_are_refused_still_records_its_status() -> None:
    """The state is persisted alone when its objects cannot be written; the next tick
    derives the same objects from it and writes them (traffic only moves forward)."""
    h = Harness({"threshold": 1})
    at_first_weight(h)
    h.metrics.success[NAME] = Sample(50.0, 6)
    h.cluster.fail_writes = True
    h.tick(dt=1.0)
    assert h.phase == "Failed"
    assert h.controller.last_write_error == "store unavailable"
    assert h.canary_weight_routed() == 10  # not written yet
    h.cluster.fail_writes = False
    h.tick(dt=0.1)
    assert h.canary_weight_routed() == 0 and h.phase == "Failed"


# --- the real store ----------------------------------------------------------------


@pytest.fixture()
def writer(any_store: ConfigStore) -> StoreWriter:
    """On SQLite and on a real etcd (replicas share one)."""
    w = StoreWriter(ConfigService(any_store))
    w.apply([deployment(), canary_body("myapp", port=8080,
                                       analysis={"interval": "1s", "metrics": []})])
    return w


def virtual_service(weight: int) -> dict:
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "myapp", "namespace": "default"},
            "spec": {"hosts": ["myapp"], "http": [{"route": [
                {"destination": {"host": "myapp"}, "weight": 100 - weight},
                {"destination": {"host": "myapp-canary"}, "weight": weight}]}]}}


def test_the_store_commits_status_and_objects_at_one_revision(writer: StoreWriter) -> None:
    store = writer.store
    status = {"phase": "Failed", "canaryWeight": 0,
              "conditions": [{"type": "Promoted", "status": "False", "reason": "Failed",
                              "message": "Canary analysis failed (fail-fast)"}]}
    writer.apply_with_status([virtual_service(0)], "default", "myapp", status)
    canary = store.get(ObjectKey("flagger.app", "Canary", "default", "myapp"))
    vs = store.get(ObjectKey("networking.istio.io", "VirtualService", "default", "myapp"))
    assert canary is not None and vs is not None
    assert canary.body["status"] == status
    assert canary.resource_version == vs.resource_version  # one commit


def test_a_refused_object_writes_no_status_either(writer: StoreWriter) -> None:
    store = writer.store
    key = ObjectKey("flagger.app", "Canary", "default", "myapp")
    before = copy.deepcopy(store.get(key).body)  # type: ignore[union-attr]
    bad = virtual_service(0)
    bad["spec"]["http"][0]["route"][0]["weight"] = "all"
    with pytest.raises(WriteError):
        writer.apply_with_status([bad], "default", "myapp", {"phase": "Failed"})
    assert store.get(key).body == before  # type: ignore[union-attr]


def test_a_status_of_a_deleted_canary_refuses_the_whole_commit(writer: StoreWriter) -> None:
    with pytest.raises(WriteError, match="404"):
        writer.apply_with_status([virtual_service(0)], "default", "gone", {"phase": "Failed"})
    assert writer.store.get(
        ObjectKey("networking.istio.io", "VirtualService", "default", "myapp")) is None
