"""A Canary served on an ingress gateway leaves the rest of the mesh alone, after
Flagger's session-affinity e2e spec (``service.hosts: ["*"]`` on a listed gateway):
Flagger's router binds ``mesh`` only when no gateway is listed and adds the apex host
only when neither it nor ``*`` is among the hosts, so an unrelated service keeps its own
traffic throughout the rollout."""

from __future__ import annotations

from tests.builders import gateway
from tests.e2e.mesh import Mesh, pod_of
from tests.e2e.rollouts import canary
from tests.e2e.scenario import Given, When
from tests.e2e.security import workload

OTHER_URL = "http://web.other:8080/"


def test_a_gateway_bound_canary_does_not_capture_other_services(
        mesh: Mesh, given: Given, when: When) -> None:
    spec = canary()
    spec["spec"]["service"].update(hosts=["*"], gateways=["public-gateway"])
    given.applied(gateway("public-gateway", ["*"]), *workload("web", "other"))
    given.rollout(spec)

    def answered_by(url: str, n: int = 10) -> set[str]:
        return {pod_of(mesh.http.get(url)).rsplit("-", 2)[0] for _ in range(n)}

    # In the mesh, the unrelated service answers for itself; myapp is its primary.
    assert answered_by(OTHER_URL) == {"web"}
    assert answered_by("http://myapp:8080/") == {"myapp-primary"}
    # At the gateway, any host reaches the Canary's service.
    assert pod_of(mesh.from_ingress(host="anything.example.com")).startswith("myapp-primary")

    # And so throughout a rollout.
    when.release("v2")
    assert answered_by(OTHER_URL) == {"web"}
