"""A Canary's target reads its error rate from a ConfigMap; editing the ConfigMap is a
new revision that is analysed, as Flagger's config tracker makes it: the primary keeps
reading its own copy (``myapp-settings-primary``), so a bad config is rolled back having
reached only the canary, and the users on the primary never see it."""

from __future__ import annotations

from typing import Any

from tests.e2e.mesh import Mesh
from tests.e2e.rollouts import FINISHED, canary, target
from tests.e2e.scenario import Given, Then, When


def settings(error_rate: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "myapp-settings", "namespace": "default"},
            "data": {"errorRate": error_rate}}


def configured_target() -> dict[str, Any]:
    body = target("v1", args="--error-rate $(ERROR_RATE)")
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [*container.get("env", []), {"name": "ERROR_RATE", "valueFrom": {
        "configMapKeyRef": {"name": "myapp-settings", "key": "errorRate"}}}]
    return body


def _get(mesh: Mesh, path: str) -> dict[str, Any]:
    r = mesh.api.get(path)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_bad_config_change_is_analysed_and_rolled_back(
        mesh: Mesh, given: Given, when: When, then: Then) -> None:
    given.applied(settings("0"))
    mesh.apply(configured_target(), canary(threshold=1))
    when.rollout_reaches(lambda b: b["phase"] == "Initialized", "initialization", timeout=60)
    mesh.converge(timeout=60)
    primary = _get(mesh, "/apis/apps/v1/namespaces/default/deployments/myapp-primary")
    env = primary["spec"]["template"]["spec"]["containers"][0]["env"]
    assert any(e.get("valueFrom", {}).get("configMapKeyRef", {}).get("name") ==
               "myapp-settings-primary" for e in env), env
    then.split_is({"v1": 10})

    with when.traffic(rate=40, max_seconds=90):
        when.apply_nowait(settings("0.6"))
        done = when.rollout_reaches(lambda b: b["phase"] in FINISHED and b.get("history"),
                                    "the config change's rollout to finish", timeout=60)
    assert done["phase"] == "Failed", done
    copy = _get(mesh, "/api/v1/namespaces/default/configmaps/myapp-settings-primary")
    assert copy["data"] == {"errorRate": "0"}
    # every user is back on the primary, which never read the bad config
    counts = mesh.versions("http://myapp:8080/", 20)
    assert counts == {"v1": 20}, counts
