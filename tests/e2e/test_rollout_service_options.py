"""A Canary's service options that shape the generated objects, after Flagger's Istio
router: ``service.delegation`` makes the generated VirtualService a delegate that a
root VirtualService of the user's sends the host's traffic to (Flagger's delegation
docs), and ``service.apex`` metadata lands on the apex Service and VirtualService."""

from __future__ import annotations

from typing import Any

from tests.e2e.mesh import Mesh
from tests.e2e.rollouts import canary
from tests.e2e.scenario import Given, Then, When

ROOT = {
    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "myapp-root", "namespace": "default"},
    "spec": {"hosts": ["myapp"], "http": [
        {"match": [{"uri": {"prefix": "/"}}],
         "delegate": {"name": "myapp", "namespace": "default"}}]},
}


def _object(mesh: Mesh, path: str) -> dict[str, Any]:
    r = mesh.api.get(path)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_delegated_canary_is_reached_through_the_root_virtual_service(
        mesh: Mesh, given: Given, when: When, then: Then) -> None:
    spec = canary(max_weight=50, step_weight=50)
    spec["spec"]["service"].update(
        delegation=True, apex={"labels": {"team": "checkout"},
                               "annotations": {"owner": "checkout@example.com"}})
    given.applied(ROOT)
    given.rollout(spec)

    vs = _object(mesh, "/apis/networking.istio.io/v1/namespaces/default/virtualservices/myapp")
    assert "hosts" not in vs["spec"] and "gateways" not in vs["spec"]
    assert vs["metadata"]["labels"]["team"] == "checkout"
    apex = _object(mesh, "/api/v1/namespaces/default/services/myapp")
    assert apex["metadata"]["labels"]["team"] == "checkout"
    assert apex["metadata"]["annotations"]["owner"] == "checkout@example.com"
    then.split_is({"v1": 10})

    # The rollout steps the delegate's weights and the root carries them to the
    # callers: the canary's checks need requests of their own, so it is promoted only if
    # traffic through the root reached it.
    with when.traffic(rate=40, max_seconds=90) as load:
        when.release("v2")
        then.rollout_phase("Succeeded")
        then.no_request_failed(load)
    then.split_is({"v2": 10})
