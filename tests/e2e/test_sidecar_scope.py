"""Istio's Sidecar resource end to end, after Istio's "Sidecar" reference (egress hosts):
a namespace's Sidecar keeps its workloads' sidecars to the services it lists; the mesh
proxy (a client in namespace default) follows default's Sidecar like any workload."""

from __future__ import annotations

from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh, version_of
from tests.e2e.scenario import Given, When
from tests.e2e.security import workload

OWN_NAMESPACE_ONLY = """\
    apiVersion: networking.istio.io/v1
    kind: Sidecar
    metadata: {name: default, namespace: default}
    spec:
      egress:
      - hosts: ["./*", "istio-system/*"]
    """
OTHER_URL = "http://web.other:8080/"


def test_a_namespace_sidecar_limits_what_its_workloads_reach(
        mesh: Mesh, given: Given, when: When) -> None:
    given.applied(myapp.version("v1"), myapp.service(), *workload("web", "other"))
    assert mesh.http.get(OTHER_URL).status_code == 200  # no Sidecar: every service

    # When default's Sidecar lists only its own namespace (and istio-system)
    when.apply(OWN_NAMESPACE_ONLY)

    # Then the other namespace's service is unknown to default's clients (passed through
    # as a host outside the registry, ALLOW_ANY, whose name no DNS server knows: 404),
    # while the own namespace's still answers.
    assert mesh.http.get(OTHER_URL).status_code == 404
    assert version_of(mesh.http.get(URL)) == "v1"
    assert "outbound|8080||web.other.svc.cluster.local" not in mesh.clusters()

    # And without the Sidecar everything is back.
    mesh.delete("Sidecar", "default", group="networking.istio.io")
    mesh.converge()
    assert mesh.http.get(OTHER_URL).status_code == 200
