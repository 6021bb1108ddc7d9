"""exportTo end to end, after Istio's reference ("exportTo" of VirtualService and of a
Service's annotation): a VirtualService kept to its own namespace steers only the
clients of that namespace; a Service kept to its own namespace is unknown elsewhere."""

from __future__ import annotations

from collections import Counter

from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh, version_of
from tests.e2e.scenario import Given, Then, When
from tests.e2e.security import as_pod, workload

TO_V2_HERE_ONLY = """\
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: myapp}
    spec:
      hosts: [myapp]
      exportTo: ["."]
      http: [{route: [{destination: {host: myapp, subset: v2}}]}]
    """
CALLER_URL = "http://myapp.default:8080/"


def test_a_virtual_service_exported_to_its_namespace_steers_only_there(
        mesh: Mesh, given: Given, when: When, then: Then) -> None:
    given.applied(myapp.version("v1"), myapp.version("v2"), myapp.service(),
                  myapp.subsets(), TO_V2_HERE_ONLY, *workload("caller", "other"))

    # The mesh proxy is a client in namespace default: the VirtualService applies.
    then.split_is({"v2": 10})
    # A pod in namespace other does not see it: the Service's default, both versions.
    with as_pod(mesh, "other", "caller") as caller:
        seen = Counter(version_of(caller.get(CALLER_URL)) for _ in range(30))
    assert set(seen) == {"v1", "v2"}, seen

    # When the Service itself is kept to its namespace, other's pods lose it (a host
    # outside their registry, passed through, whose name does not resolve: 404),
    # default's clients keep it.
    private = myapp.service()
    private["metadata"]["annotations"] = {"networking.istio.io/exportTo": "."}
    when.apply(private)
    with as_pod(mesh, "other", "caller") as caller:
        assert caller.get(CALLER_URL).status_code == 404
    assert version_of(mesh.http.get(URL)) == "v2"
