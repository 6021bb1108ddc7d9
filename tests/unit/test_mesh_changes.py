"""Which store changes rebuild the mesh: not a Canary's status (written on every rollout
step, a few milliseconds before the route change that matters during a rollback), every
other change, a Canary's spec, labels and annotations included."""

from __future__ import annotations

import copy

from tests.builders import canary, service

from meshpilot.api.identity import ObjectKey
from meshpilot.server.mesh_changes import MeshChanges

CANARY = ObjectKey("flagger.app", "Canary", "default", "myapp")


def stored(body: dict, version: int, status: dict | None = None) -> dict:
    out = copy.deepcopy(body)
    out["metadata"]["resourceVersion"] = str(version)
    if status is not None:
        out["status"] = status
    return out


def test_a_canary_status_write_needs_no_rebuild_but_its_spec_does() -> None:
    changes = MeshChanges()
    body = canary("myapp", analysis={"interval": "1s"}, port=8080)
    changes.put(CANARY, stored(body, 1))
    assert changes.take() is True and changes.take() is False
    changes.put(CANARY, stored(body, 2, {"phase": "Progressing", "canaryWeight": 10}))
    changes.put(CANARY, stored(body, 3, {"phase": "Failed", "canaryWeight": 0}))
    assert changes.take() is False
    edited = copy.deepcopy(body)
    edited["metadata"]["annotations"] = {"meshpilot.io/fail-fast": "false"}
    changes.put(CANARY, stored(edited, 4, {"phase": "Failed"}))
    assert changes.take() is True


def test_every_other_change_does() -> None:
    changes = MeshChanges()
    svc = service("myapp", port=8080)
    key = ObjectKey("", "Service", "default", "myapp")
    changes.put(key, stored(svc, 1))
    changes.take()
    changes.put(key, stored(svc, 2, {"loadBalancer": {}}))  # a status of another kind
    assert changes.take() is True
    changes.put(CANARY, stored(canary("myapp", analysis={}, port=8080), 3))
    changes.take()
    changes.remove(CANARY)
    assert changes.take() is True
