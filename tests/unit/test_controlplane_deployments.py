"""The control plane reads Deployments from its store mirror, each body parsed once while
it stays the same object; an API answer can still read the store itself, each version
parsed once."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.testclient import TestClient
from tests.builders import stored

from meshpilot.server.controlplane import MeshControlPlane
from meshpilot.server.mesh_api import MeshAPI
from meshpilot.statedir import StateDir
from meshpilot.store import SqliteStore
from meshpilot.store.mirror import StoreMirror

EXAMPLE = Path(__file__).parents[2] / "examples/canary/deployments.yaml"


def deployments() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]


def test_deployments_come_from_the_mirror_and_are_parsed_once_per_body(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "config.db")
    cp = MeshControlPlane(StateDir(tmp_path), store)
    first, second = deployments()[:2]
    store.commit([stored(first), stored(second)])
    cp._mirror = StoreMirror(store)
    try:
        before = {name: dep for _, name, dep in cp.deployments()}
        assert sorted(before) == ["myapp-v1", "myapp-v2"]
        again = {name: dep for _, name, dep in cp.deployments()}
        assert all(again[n] is before[n] for n in before)  # unchanged bodies: not re-parsed

        changed = copy.deepcopy(second)
        changed["spec"]["replicas"] = 5
        store.commit([stored(changed)])
        read = cp.deployments(from_store=True)
        assert read[1][2].spec.replicas == 5  # the store at once
        read_again = cp.deployments(from_store=True)
        assert all(a[2] is b[2] for a, b in zip(read, read_again, strict=True))
        assert cp._mirror.poll(timeout=2)
        after = {name: dep for _, name, dep in cp.deployments()}
        assert after["myapp-v1"] is before["myapp-v1"]
        assert after["myapp-v2"] is not before["myapp-v2"]
        assert after["myapp-v2"].spec.replicas == 5
    finally:
        cp._mirror.close()
        store.close()


def test_readiness_waits_for_every_stored_change_to_be_in_the_mesh(tmp_path: Path) -> None:
    """Right after a write, the latest mesh version does not hold it yet (the rebuild
    follows the store's watch): readiness says so instead of reporting the mesh ready at
    the version before it."""
    store = SqliteStore(tmp_path / "config.db")
    cp = MeshControlPlane(StateDir(tmp_path), store)
    cp._mirror = StoreMirror(store)
    client = TestClient(Starlette(routes=MeshAPI(cp).routes()))

    def readiness() -> dict[str, Any]:
        body: dict[str, Any] = client.get("/apis/meshpilot.io/v1/readiness").json()
        return body

    try:
        cp._rebuild()
        assert readiness()["ready"] and not readiness()["changesPending"]
        store.commit([stored(deployments()[0])])
        state = readiness()
        assert state["changesPending"] and not state["ready"]
        assert cp._mirror.poll(timeout=2)
        assert readiness()["changesPending"]  # in the mirror, not yet in a snapshot
        cp._rebuild()
        assert not readiness()["changesPending"]
        assert cp.built_from_revision == store.revision()
    finally:
        cp._mirror.close()
        store.close()
