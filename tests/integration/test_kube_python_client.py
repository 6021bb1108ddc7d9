"""The official Python ``kubernetes`` client against a real control plane, through the
kubeconfig ``up`` writes (issue 14): the client-go shapes a program reads — lists with a
resourceVersion, create, get, merge patch, a watch from that resourceVersion, delete —
as it would against a cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from tests.conftest import ControlPlane

GROUP, VERSION, PLURAL = "networking.istio.io", "v1", "virtualservices"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[client.ApiClient]:
    cp = ControlPlane(tmp_path_factory.mktemp("pyclient") / "state", ["--no-mesh"])
    try:
        cp.start()
        api_client = config.new_client_from_config(str(Path(cp.state_dir) / "kubeconfig"))
        yield api_client
        api_client.close()
    finally:
        cp.stop()


def vs(name: str, weight: int = 100) -> dict[str, object]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"hosts": [name], "http": [{"route": [
                {"destination": {"host": name}, "weight": weight}]}]}}


def test_custom_objects_round_trip_and_a_watch_sees_the_changes(
        api: client.ApiClient) -> None:
    objects = client.CustomObjectsApi(api)
    # (a resourceVersion of 0 means "from any point" to a watch, as in Kubernetes: the
    # store is given one object first, so the list's version names a real revision)
    objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, vs("seed"))
    listed = objects.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    since = listed["metadata"]["resourceVersion"]
    assert since != "0"
    created = objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL,
                                                      vs("reviews"))
    assert created["metadata"]["name"] == "reviews"
    got = objects.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "reviews")
    assert got["spec"]["hosts"] == ["reviews"]
    patched = objects.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "reviews",
        {"metadata": {"labels": {"team": "books"}}})
    assert patched["metadata"]["labels"] == {"team": "books"}
    seen = []
    for event in watch.Watch().stream(
            objects.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL,
            resource_version=since, timeout_seconds=5):
        seen.append((event["type"], event["object"]["metadata"].get("labels")))
        if len(seen) == 2:
            break
    assert seen == [("ADDED", None), ("MODIFIED", {"team": "books"})]
    objects.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "reviews")
    with pytest.raises(ApiException) as gone:
        objects.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "reviews")
    assert gone.value.status == 404


def test_a_refused_object_is_a_422_naming_the_field(api: client.ApiClient) -> None:
    objects = client.CustomObjectsApi(api)
    bad = vs("ratings")
    bad["spec"]["http"][0]["route"][0]["wieght"] = 10  # type: ignore[index]
    with pytest.raises(ApiException) as refused:
        objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, bad)
    assert refused.value.status == 422
    assert "wieght" in refused.value.body and "MP0010" in refused.value.body
    names = [i["metadata"]["name"] for i in objects.list_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL)["items"]]
    assert "ratings" not in names  # nothing was stored


def test_core_v1_services_read_as_typed_objects(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    body = client.V1Service(
        metadata=client.V1ObjectMeta(name="details", namespace="default"),
        spec=client.V1ServiceSpec(selector={"app": "details"},
                                  ports=[client.V1ServicePort(name="http", port=9080)]))
    core.create_namespaced_service("default", body)
    services = core.list_namespaced_service("default")
    assert [s.metadata.name for s in services.items] == ["details"]
    assert services.items[0].spec.ports[0].port == 9080
