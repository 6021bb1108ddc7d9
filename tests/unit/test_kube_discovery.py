"""Discovery documents (meshpilot.server.kube_discovery) in the shapes kubectl 1.32
reads: the aggregated apidiscovery.k8s.io/v2 APIGroupDiscoveryList it asks for first
(one request for /api, one for /apis), and the per-group APIResourceList with
subresources named ``{plural}/{sub}``, as an API server serves them."""

from __future__ import annotations

from meshpilot.server.kube_discovery import aggregated, api_resource_list, wants_aggregated

KUBECTL_ACCEPT = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                  "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
                  "application/json")


def test_kubectls_accept_header_asks_for_the_aggregated_form() -> None:
    assert wants_aggregated(KUBECTL_ACCEPT)
    assert not wants_aggregated("application/json")
    assert not wants_aggregated("*/*")


def test_named_groups_with_the_preferred_version_first() -> None:
    groups = {g["metadata"]["name"]: g for g in aggregated(core=False)["items"]}
    assert "" not in groups
    networking = groups["networking.istio.io"]
    assert [v["version"] for v in networking["versions"]] == ["v1", "v1beta1", "v1alpha3"]
    vs = next(r for r in networking["versions"][0]["resources"]
              if r["resource"] == "virtualservices")
    assert vs["responseKind"] == {"group": "networking.istio.io", "version": "v1",
                                  "kind": "VirtualService"}
    assert (vs["scope"], vs["singularResource"], vs["shortNames"]) == (
        "Namespaced", "virtualservice", ["vs"])
    assert "istio-io" in vs["categories"]
    deploy = next(r for r in groups["apps"]["versions"][0]["resources"])
    assert {s["subresource"]: s["responseKind"]["kind"] for s in deploy["subresources"]} == {
        "status": "Deployment", "scale": "Scale"}


def test_the_core_group_with_the_runtimes_pods() -> None:
    (core,) = aggregated(core=True)["items"]
    resources = {r["resource"]: r for r in core["versions"][0]["resources"]}
    assert resources["namespaces"]["scope"] == "Cluster"
    assert resources["pods"]["verbs"] == ["get", "list"]
    assert [s["subresource"] for s in resources["pods"]["subresources"]] == ["log"]


def test_the_per_group_list_names_subresources() -> None:
    listed = api_resource_list("apps", "v1")
    assert listed is not None
    names = [r["name"] for r in listed["resources"]]
    assert names == ["deployments", "deployments/status", "deployments/scale"]
    assert api_resource_list("apps", "v9") is None
