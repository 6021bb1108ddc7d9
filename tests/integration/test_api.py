"""The control plane's HTTP API, against a real ``python -m meshpilot.server`` process."""

from __future__ import annotations

import json
import os
import queue
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from tests.builders import route_to, service, virtual_service
from tests.conftest import ControlPlane, read_endpoints, wait_for
from tests.tls_pairs import CHAIN, KEY, OTHER_KEY, b64, key_pem

NET = "networking.istio.io"
MP = "/apis/meshpilot.io/v1"
VS_PATH = f"/apis/{NET}/v1/namespaces/default/virtualservices"
SVC_PATH = "/api/v1/namespaces/default/services"


def vs(name: str, *, namespace: str = "default", host: str | None = None,
       version: str = "v1", labels: dict[str, str] | None = None,
       rv: str | None = None, timeout: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if labels:
        meta["labels"] = labels
    if rv is not None:
        meta["resourceVersion"] = rv
    host = host or name
    rule = route_to(host, timeout=timeout) if timeout else route_to(host)
    return virtual_service(name, hosts=[host], http=[rule], namespace=namespace,
                           version=version, **meta)


def yaml_text(*docs: dict[str, Any]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def apply(client: httpx.Client, *docs: dict[str, Any], file: str = "test.yaml",
          text: str | None = None, dry_run: bool = False) -> httpx.Response:
    payload = {"sources": [{"file": file, "text": text if text is not None else yaml_text(*docs)}],
               "dryRun": dry_run}
    return client.post(f"{MP}/apply", json=payload)


def get_vs(client: httpx.Client, name: str, namespace: str = "default",
           version: str = "v1") -> httpx.Response:
    return client.get(f"/apis/{NET}/{version}/namespaces/{namespace}/virtualservices/{name}")


def revision(client: httpx.Client) -> int:
    return client.get("/version").json()["revision"]


def codes_of(response: httpx.Response) -> list[str]:
    return [d["code"] for d in response.json()["diagnostics"]]


def errors_of(response: httpx.Response) -> list[dict[str, Any]]:
    return [d for d in response.json()["diagnostics"] if d["severity"] == "error"]


# --- authentication -----------------------------------------------------------------

PROTECTED = [
    ("GET", "/version"),
    ("GET", "/healthz"),
    ("GET", "/apis"),
    ("GET", f"{VS_PATH}"),
    ("GET", f"{VS_PATH}/reviews"),
    ("GET", f"/apis/{NET}/v1/virtualservices"),
    ("GET", f"{SVC_PATH}/reviews"),
    ("PUT", f"{VS_PATH}/reviews"),
    ("DELETE", f"{VS_PATH}/reviews"),
    ("POST", f"{MP}/apply"),
    ("POST", f"{MP}/delete"),
    ("GET", f"{MP}/diagnostics"),
    ("GET", f"{VS_PATH}?watch=true"),
    ("GET", "/no/such/route"),
]


@pytest.mark.parametrize("token", ["", "wrong-token"], ids=["no-token", "wrong-token"])
def test_every_route_requires_the_bearer_token(control_plane: ControlPlane, token: str) -> None:
    body = json.dumps({"sources": [{"file": "x.yaml", "text": yaml_text(vs("reviews"))}]})
    with control_plane.new_client(token=token) as anon:
        for method, path in PROTECTED:
            r = anon.request(method, path, content=body if method in ("POST", "PUT") else None)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["reason"] == "Unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
    # the token must be sent as a bearer token, exactly
    for header in (control_plane.token, f"Basic {control_plane.token}",
                   f"Bearer {control_plane.token}x", f"Bearer  {control_plane.token}"):
        r = httpx.get(f"{control_plane.api}/version", headers={"Authorization": header},
                      trust_env=False)
        assert r.status_code == 401, header
    # nothing was written by the refused requests
    assert control_plane.client.get(f"{VS_PATH}/reviews").status_code == 404
    assert revision(control_plane.client) == 0


def test_version_and_health_with_the_token(control_plane: ControlPlane) -> None:
    c = control_plane.client
    info = c.get("/version").json()
    assert info["pid"] == control_plane.proc.pid
    assert Path(info["stateDir"]) == control_plane.state_dir
    assert info["revision"] == 0
    assert info["version"]
    assert c.get("/healthz").json() == {"status": "ok"}
    kinds = {r["kind"]: r for r in c.get("/apis").json()["resources"]}
    assert kinds["VirtualService"]["versions"] == ["v1alpha3", "v1beta1", "v1"]
    assert "vs" in kinds["VirtualService"]["shortNames"]


# --- round trips ----------------------------------------------------------------------

def test_batch_apply_get_list_delete_round_trip(control_plane: ControlPlane) -> None:
    c = control_plane.client
    r = apply(c, vs("reviews"), vs("ratings"), service("reviews"))
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [(x["kind"], x["name"], x["action"]) for x in results] == [
        ("VirtualService", "reviews", "created"), ("VirtualService", "ratings", "created"),
        ("Service", "reviews", "created")]
    # one commit, one revision for all of it
    assert {x["resourceVersion"] for x in results} == {"1"}
    assert revision(c) == 1

    obj = get_vs(c, "reviews").json()
    assert obj["spec"] == vs("reviews")["spec"]
    assert obj["metadata"]["resourceVersion"] == "1"
    assert obj["metadata"]["generation"] == 1
    assert obj["metadata"]["uid"] and obj["metadata"]["creationTimestamp"]

    listing = c.get(VS_PATH).json()
    assert listing["kind"] == "VirtualServiceList"
    assert listing["metadata"]["resourceVersion"] == "1"
    assert [i["metadata"]["name"] for i in listing["items"]] == ["ratings", "reviews"]
    assert [i["metadata"]["name"] for i in c.get(SVC_PATH).json()["items"]] == ["reviews"]

    again = apply(c, vs("reviews"))
    assert again.json()["results"][0]["action"] == "unchanged"
    assert revision(c) == 1

    dry = apply(c, vs("reviews", timeout="5s"), vs("new"), dry_run=True)
    assert dry.status_code == 200
    assert [x["action"] for x in dry.json()["results"]] == [
        "configured (dry run)", "created (dry run)"]
    assert revision(c) == 1
    assert get_vs(c, "new").status_code == 404

    r = c.post(f"{MP}/delete", json={"keys": [
        {"group": NET, "kind": "VirtualService", "namespace": "default", "name": "reviews"},
        {"group": "", "kind": "Service", "namespace": "default", "name": "reviews"}]})
    assert r.status_code == 200, r.text
    assert [x["action"] for x in r.json()["results"]] == ["deleted", "deleted"]
    assert get_vs(c, "reviews").status_code == 404
    assert c.get(f"{SVC_PATH}/reviews").status_code == 404
    # delete by the documents themselves
    r = c.post(f"{MP}/delete", json={"sources": [{"file": "x.yaml",
                                                   "text": yaml_text(vs("ratings"))}]})
    assert r.status_code == 200, r.text
    assert c.get(VS_PATH).json()["items"] == []


def test_kubernetes_style_create_replace_get_delete(control_plane: ControlPlane) -> None:
    c = control_plane.client
    r = c.post(VS_PATH, json=vs("reviews"))
    assert r.status_code == 200, r.text
    created = r.json()["results"][0]
    assert created["action"] == "created"

    r = c.put(f"{VS_PATH}/reviews", json=vs("reviews", timeout="3s"))
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["action"] == "configured"
    obj = c.get(f"{VS_PATH}/reviews").json()
    assert obj["spec"]["http"][0]["timeout"] == "3s"
    assert obj["metadata"]["generation"] == 2
    assert int(obj["metadata"]["resourceVersion"]) > int(created["resourceVersion"])

    # PUT creates when missing (apply semantics); the name comes from the path
    body = vs("ratings")
    del body["metadata"]
    r = c.put(f"{VS_PATH}/ratings", json=body)
    assert r.status_code == 200, r.text
    assert c.get(f"{VS_PATH}/ratings").json()["metadata"]["namespace"] == "default"
    # metadata that contradicts the path is refused
    r = c.put(f"{VS_PATH}/ratings", json=vs("other"))
    assert r.status_code == 400
    assert c.get(f"{VS_PATH}/other").status_code == 404

    # a body of another kind than the path names is refused, not stored as that kind
    dr = {"apiVersion": f"{NET}/v1", "kind": "DestinationRule",
          "metadata": {"name": "reviews"}, "spec": {"host": "reviews"}}
    assert c.put(f"{VS_PATH}/reviews", json=dr).status_code == 400
    assert c.post(SVC_PATH, json=dr).status_code == 400
    assert c.get(f"/apis/{NET}/v1/destinationrules").json()["items"] == []

    names = [i["metadata"]["name"] for i in c.get(VS_PATH).json()["items"]]
    assert names == ["ratings", "reviews"]

    r = c.delete(f"{VS_PATH}/reviews")
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["action"] == "deleted"
    assert c.get(f"{VS_PATH}/reviews").status_code == 404
    assert c.get(f"{VS_PATH}/reviews").json()["reason"] == "NotFound"

    # body that is not JSON, or not an object
    assert c.put(f"{VS_PATH}/x", content=b"{not json").status_code == 400
    assert c.post(VS_PATH, json=[1, 2]).status_code == 400
    # unknown resources and versions
    assert c.get(f"/apis/{NET}/v9/namespaces/default/virtualservices").status_code == 404
    assert c.get(f"/apis/{NET}/v1/namespaces/default/widgets").status_code == 404


def test_core_services_at_api_v1(control_plane: ControlPlane) -> None:
    c = control_plane.client
    r = c.post(SVC_PATH, json=service("reviews"))
    assert r.status_code == 200, r.text
    got = c.get(f"{SVC_PATH}/reviews").json()
    assert got["apiVersion"] == "v1"
    assert got["kind"] == "Service"
    assert got["spec"]["ports"][0]["port"] == 80

    r = c.put(f"{SVC_PATH}/reviews", json=service("reviews", port=8080))
    assert r.status_code == 200, r.text
    assert c.get(f"{SVC_PATH}/reviews").json()["spec"]["ports"][0]["port"] == 8080
    listing = c.get(SVC_PATH).json()
    assert listing["kind"] == "ServiceList"
    assert [i["metadata"]["name"] for i in listing["items"]] == ["reviews"]
    assert c.get("/api/v1/services").json()["items"][0]["metadata"]["name"] == "reviews"

    assert c.delete(f"{SVC_PATH}/reviews").status_code == 200
    assert c.get(f"{SVC_PATH}/reviews").status_code == 404
    assert c.delete(f"{SVC_PATH}/reviews").status_code == 404


@pytest.mark.parametrize("written", ["v1alpha3", "v1beta1", "v1"])
def test_every_api_version_is_readable_at_every_version_path(
    control_plane: ControlPlane, written: str
) -> None:
    c = control_plane.client
    assert apply(c, vs("reviews", version=written)).status_code == 200
    for version in ("v1alpha3", "v1beta1", "v1"):
        obj = get_vs(c, "reviews", version=version).json()
        assert obj["apiVersion"] == f"{NET}/{version}"
        assert obj["spec"] == vs("reviews")["spec"]
        listing = c.get(f"/apis/{NET}/{version}/namespaces/default/virtualservices").json()
        assert listing["apiVersion"] == f"{NET}/{version}"
        assert [i["apiVersion"] for i in listing["items"]] == [f"{NET}/{version}"]
    # the same object, whatever version it is applied at
    again = apply(c, vs("reviews", version="v1alpha3" if written != "v1alpha3" else "v1"))
    assert again.json()["results"][0]["action"] == "unchanged"


def test_generation_bumps_on_spec_changes_only(control_plane: ControlPlane) -> None:
    c = control_plane.client
    first = apply(c, vs("reviews")).json()["results"][0]
    assert (first["generation"], first["resourceVersion"]) == (1, "1")

    spec = apply(c, vs("reviews", timeout="2s")).json()["results"][0]
    assert spec["action"] == "configured"
    assert (spec["generation"], spec["resourceVersion"]) == (2, "2")

    label = apply(c, vs("reviews", timeout="2s", labels={"team": "a"})).json()["results"][0]
    assert label["action"] == "configured"
    assert (label["generation"], label["resourceVersion"]) == (2, "3")

    same = apply(c, vs("reviews", timeout="2s", labels={"team": "a"})).json()["results"][0]
    assert (same["action"], same["generation"], same["resourceVersion"]) == (
        "unchanged", 2, "3")

    obj = get_vs(c, "reviews").json()
    assert obj["metadata"]["generation"] == 2
    assert obj["metadata"]["labels"] == {"team": "a"}
    assert obj["metadata"]["uid"] == get_vs(c, "reviews", version="v1beta1").json()[
        "metadata"]["uid"]


# --- optimistic concurrency and all-or-nothing -------------------------------------------

def test_stale_resource_version_is_a_conflict(control_plane: ControlPlane) -> None:
    c = control_plane.client
    apply(c, vs("reviews"))
    old_rv = get_vs(c, "reviews").json()["metadata"]["resourceVersion"]

    ok = apply(c, vs("reviews", rv=old_rv, timeout="1s"))
    assert ok.status_code == 200, ok.text
    new = get_vs(c, "reviews").json()
    assert int(new["metadata"]["resourceVersion"]) > int(old_rv)

    stale = apply(c, vs("reviews", rv=old_rv, timeout="9s"), file="stale.yaml")
    assert stale.status_code == 409, stale.text
    (diag,) = stale.json()["diagnostics"]
    assert diag["code"] == "MP0020"
    assert diag["path"] == "metadata.resourceVersion"
    assert diag["file"] == "stale.yaml"
    assert diag["line"] == 6  # apiVersion, kind, metadata, name, namespace, rv
    assert old_rv in diag["message"]
    assert get_vs(c, "reviews").json() == new  # nothing changed

    # the same through PUT, and "must not exist yet" through resourceVersion 0
    r = c.put(f"{VS_PATH}/reviews", json=vs("reviews", rv=old_rv, timeout="9s"))
    assert r.status_code == 409
    assert codes_of(r) == ["MP0020"]
    r = apply(c, vs("reviews", rv="0"))
    assert r.status_code == 409
    # a resourceVersion the store never issued is a validation error, not a conflict
    r = apply(c, vs("reviews", rv="abc"))
    assert r.status_code == 422
    assert [d["code"] for d in errors_of(r)] == ["MP0017"]
    assert get_vs(c, "reviews").json() == new


def test_batch_with_an_invalid_document_stores_nothing(control_plane: ControlPlane) -> None:
    c = control_plane.client
    bad = vs("bad")
    bad["spec"]["http"][0]["route"][0]["weight"] = -1
    r = apply(c, vs("good"), bad, file="mixed.yaml")
    assert r.status_code == 422, r.text
    assert "MP0013" in codes_of(r)
    assert all(d["file"] == "mixed.yaml" for d in errors_of(r))
    assert get_vs(c, "good").status_code == 404
    assert get_vs(c, "bad").status_code == 404
    assert revision(c) == 0
    # two sources, the second does not even parse
    payload = {"sources": [{"file": "a.yaml", "text": yaml_text(vs("good"))},
                           {"file": "b.yaml", "text": "kind: [unclosed\n"}]}
    r = c.post(f"{MP}/apply", json=payload)
    assert r.status_code == 422
    assert codes_of(r) == ["MP0001"]
    assert r.json()["diagnostics"][0]["file"] == "b.yaml"
    assert get_vs(c, "good").status_code == 404


def test_batch_with_a_conflicting_object_stores_nothing(control_plane: ControlPlane) -> None:
    c = control_plane.client
    apply(c, vs("existing"))
    stale = get_vs(c, "existing").json()["metadata"]["resourceVersion"]
    apply(c, vs("existing", timeout="1s"))
    before = revision(c)

    r = apply(c, vs("first"), vs("existing", rv=stale, timeout="7s"))
    assert r.status_code == 409, r.text
    assert codes_of(r) == ["MP0020"]
    assert get_vs(c, "first").status_code == 404
    assert get_vs(c, "existing").json()["spec"]["http"][0]["timeout"] == "1s"
    assert revision(c) == before


def test_post_of_an_existing_name_is_a_conflict(control_plane: ControlPlane) -> None:
    c = control_plane.client
    assert c.post(VS_PATH, json=vs("reviews")).status_code == 200
    original = get_vs(c, "reviews").json()
    r = c.post(VS_PATH, json=vs("reviews", timeout="5s"))
    assert r.status_code == 409, r.text
    assert codes_of(r) == ["MP0020"]
    assert get_vs(c, "reviews").json() == original


def test_delete_of_a_missing_object_deletes_nothing(control_plane: ControlPlane) -> None:
    c = control_plane.client
    apply(c, vs("keep"))
    before = revision(c)
    keys = [{"group": NET, "kind": "VirtualService", "namespace": "default", "name": n}
            for n in ("keep", "missing")]
    r = c.post(f"{MP}/delete", json={"keys": keys})
    assert r.status_code == 404, r.text
    (diag,) = r.json()["diagnostics"]
    assert diag["code"] == "MP0021"
    assert "missing" in diag["object"]
    assert get_vs(c, "keep").status_code == 200
    assert revision(c) == before

    # same by documents
    r = c.post(f"{MP}/delete", json={"sources": [
        {"file": "d.yaml", "text": yaml_text(vs("keep"), vs("missing"))}]})
    assert r.status_code == 404
    assert get_vs(c, "keep").status_code == 200

    assert c.delete(f"{VS_PATH}/missing").status_code == 404
    # a stale resourceVersion on DELETE is a conflict
    r = c.delete(f"{VS_PATH}/keep", params={"resourceVersion": "999"})
    assert r.status_code == 409
    assert get_vs(c, "keep").status_code == 200

    # ignoreNotFound deletes what exists
    r = c.post(f"{MP}/delete", json={"keys": keys, "ignoreNotFound": True})
    assert r.status_code == 200, r.text
    assert [x["name"] for x in r.json()["results"]] == ["keep"]
    assert get_vs(c, "keep").status_code == 404


def test_validation_errors_carry_file_line_and_path(control_plane: ControlPlane) -> None:
    c = control_plane.client
    text = (
        "apiVersion: networking.istio.io/v1\n"   # 1
        "kind: VirtualService\n"                 # 2
        "metadata:\n"                            # 3
        "  name: reviews\n"                      # 4
        "spec:\n"                                # 5
        "  hosts: [reviews]\n"                   # 6
        "  http:\n"                              # 7
        "  - route:\n"                           # 8
        "    - destination:\n"                   # 9
        "        host: reviews\n"                # 10
        "      weight: -5\n"                     # 11
        "  bogus: 1\n"                           # 12
        "---\n"                                  # 13
        "apiVersion: networking.istio.io/v1\n"   # 14
        "kind: VirtualServise\n"                 # 15
        "metadata:\n"                            # 16
        "  name: typo\n"                         # 17
    )
    r = apply(c, text=text, file="conf/reviews.yaml")
    assert r.status_code == 422
    found = {(d["code"], d["line"], d["path"]) for d in errors_of(r)}
    assert ("MP0013", 11, "spec.http[0].route[0].weight") in found
    assert ("MP0010", 12, "spec.bogus") in found
    assert any(code == "MP0004" and line == 15 for code, line, _ in found)
    for d in errors_of(r):
        assert d["file"] == "conf/reviews.yaml"
        assert d["column"] >= 1
    assert "VirtualService default/reviews" in {d["object"] for d in errors_of(r)}

    r = apply(c, text="apiVersion: v1\nkind: Service\nmetadata:\n  name: [x\n", file="p.yaml")
    assert r.status_code == 422
    (diag,) = r.json()["diagnostics"]
    assert (diag["code"], diag["file"]) == ("MP0001", "p.yaml")
    assert diag["line"] >= 4

    assert c.post(f"{MP}/apply", content=b"nope").status_code == 400
    assert c.post(f"{MP}/apply", json={"files": []}).status_code == 400
    assert revision(c) == 0


def test_diagnostics_endpoint(control_plane: ControlPlane) -> None:
    c = control_plane.client
    apply(c, vs("reviews"), vs("ratings"))
    everything = c.get(f"{MP}/diagnostics").json()["diagnostics"]
    assert {d["object"] for d in everything} >= {"VirtualService default/reviews",
                                                   "VirtualService default/ratings"}
    one = c.get(f"{MP}/diagnostics", params={
        "group": NET, "kind": "VirtualService", "namespace": "default", "name": "reviews"})
    found = one.json()["diagnostics"]
    assert found and {d["object"] for d in found} == {"VirtualService default/reviews"}
    assert {d["code"] for d in found} == {"MP2001"}  # no Service behind the host
    apply(c, service("reviews"))
    again = c.get(f"{MP}/diagnostics", params={
        "group": NET, "kind": "VirtualService", "namespace": "default", "name": "reviews"})
    assert again.json()["diagnostics"] == []


# --- watch ---------------------------------------------------------------------------------

def _watch_in_thread(
    cp: ControlPlane, path: str, rv: int | str, count: int
) -> tuple[threading.Thread, queue.Queue[Any]]:
    """Read ``count`` events of a watch in a thread; errors end up in the queue too."""
    events: queue.Queue[Any] = queue.Queue()
    started = threading.Event()

    def run() -> None:
        try:
            with cp.new_client(timeout=httpx.Timeout(30.0)) as client, client.stream(
                "GET", path,
                params={"watch": "true", "resourceVersion": str(rv), "timeoutSeconds": "30"},
            ) as response:
                events.put(("status", response.status_code))
                started.set()
                seen = 0
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    events.put(json.loads(line))
                    seen += 1
                    if seen >= count:
                        return
        except Exception as exc:
            events.put(exc)
        finally:
            started.set()
            events.put(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(15)
    return thread, events


def _drain(thread: threading.Thread, events: queue.Queue[Any]) -> list[Any]:
    thread.join(20)
    assert not thread.is_alive(), "watch did not deliver the expected events"
    out = []
    while (item := events.get_nowait()) is not None:
        if isinstance(item, Exception):
            raise item
        out.append(item)
    return out


def test_watch_streams_added_modified_deleted_in_order(control_plane: ControlPlane) -> None:
    c = control_plane.client
    apply(c, vs("before"))
    rv = c.get(VS_PATH).json()["metadata"]["resourceVersion"]
    thread, events = _watch_in_thread(control_plane, VS_PATH, rv, count=4)

    assert apply(c, vs("reviews")).status_code == 200
    assert apply(c, service("reviews")).status_code == 200  # another kind: not streamed
    assert apply(c, vs("other", namespace="prod")).status_code == 200  # another namespace
    assert apply(c, vs("reviews", timeout="4s")).status_code == 200
    assert apply(c, vs("reviews", timeout="4s")).status_code == 200  # unchanged: no event
    assert c.delete(f"{VS_PATH}/reviews").status_code == 200
    assert apply(c, vs("last")).status_code == 200

    status, *lines = _drain(thread, events)
    assert status == ("status", 200)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [
        ("ADDED", "reviews"), ("MODIFIED", "reviews"), ("DELETED", "reviews"), ("ADDED", "last")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in lines]
    assert rvs == sorted(rvs) and len(set(rvs)) == 4 and rvs[0] > int(rv)
    assert lines[1]["object"]["spec"]["http"][0]["timeout"] == "4s"
    assert lines[1]["object"]["metadata"]["generation"] == 2
    assert all(e["object"]["apiVersion"] == f"{NET}/v1" for e in lines)

    # the client has gone: the control plane still stops cleanly, without a stream left
    # to wait out the API server's graceful-shutdown timeout (its error line says so;
    # a wall-clock bound alone failed on loaded machines with nothing held)
    started = time.monotonic()
    assert control_plane.terminate() == 0
    assert time.monotonic() - started < 20
    log = control_plane.log_path.read_text(errors="replace")
    assert "timeout graceful shutdown exceeded" not in log, log[-2000:]


def test_watch_resumes_from_an_old_resource_version(control_plane: ControlPlane) -> None:
    c = control_plane.client
    apply(c, vs("a"))
    apply(c, vs("a", timeout="1s"))
    apply(c, vs("b", namespace="prod"))
    c.delete(f"{VS_PATH}/a")
    # all namespaces, served at v1alpha3, replayed from revision 0
    path = f"/apis/{NET}/v1alpha3/virtualservices"
    thread, events = _watch_in_thread(control_plane, path, 0, count=4)
    _, *lines = _drain(thread, events)
    assert [(e["type"], e["object"]["metadata"]["namespace"], e["object"]["metadata"]["name"])
            for e in lines] == [("ADDED", "default", "a"), ("MODIFIED", "default", "a"),
                                ("ADDED", "prod", "b"), ("DELETED", "default", "a")]
    assert {e["object"]["apiVersion"] for e in lines} == {f"{NET}/v1alpha3"}

    bad = c.get(VS_PATH, params={"watch": "true", "resourceVersion": "x"})
    assert bad.status_code == 400


# --- concurrency -----------------------------------------------------------------------------

def test_concurrent_applies_are_serialised_consistently(control_plane: ControlPlane) -> None:
    threads, per_thread = 8, 10
    apply(control_plane.client, vs("shared"))
    results: list[tuple[str, int, dict[str, Any]]] = []  # (kind of write, status, body)
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        with control_plane.new_client() as c:
            barrier.wait(10)
            for i in range(per_thread):
                r = apply(c, vs(f"vs-{t}-{i}"))
                with lock:
                    results.append(("distinct", r.status_code, r.json()))
                if i % 3 == 0:  # unconditional write to the shared object
                    r = apply(c, vs("shared", labels={"by": f"t{t}-{i}"}))
                    with lock:
                        results.append(("shared", r.status_code, r.json()))
                if i % 3 == 1:  # read-modify-write with the resourceVersion it read
                    rv = get_vs(c, "shared").json()["metadata"]["resourceVersion"]
                    r = apply(c, vs("shared", rv=rv, labels={"by": f"t{t}-{i}-cas"}))
                    with lock:
                        results.append(("cas", r.status_code, r.json()))

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(90)
    assert not any(th.is_alive() for th in pool)

    for kind, status, body in results:
        if kind == "cas" and status == 409:
            assert [d["code"] for d in body["diagnostics"]] == ["MP0020"]
        else:
            assert status == 200, (kind, body)
    assert any(k == "cas" and s == 200 for k, s, _ in results)

    c = control_plane.client
    items = c.get(VS_PATH).json()["items"]
    assert len(items) == threads * per_thread + 1
    # every write that changed something got its own revision
    written = [int(x["resourceVersion"]) for _, s, b in results if s == 200
               for x in b["results"] if x["action"] != "unchanged"]
    assert len(written) == len(set(written))
    final_revision = revision(c)
    assert final_revision == max(written)
    assert final_revision == 1 + len(written)  # plus the initial apply of "shared"
    # the shared object is the last write that succeeded on it
    shared = get_vs(c, "shared").json()
    last = max(((int(x["resourceVersion"]), x) for k, s, b in results
                if k != "distinct" and s == 200 for x in b["results"]), key=lambda p: p[0])
    assert shared["metadata"]["resourceVersion"] == str(last[0])
    assert shared["metadata"]["generation"] == 1  # only labels changed
    distinct = {i["metadata"]["name"]: i for i in items if i["metadata"]["name"] != "shared"}
    assert len({i["metadata"]["resourceVersion"] for i in distinct.values()}) == len(distinct)


# --- durability and process lifecycle -----------------------------------------------------

def _snapshot(c: httpx.Client) -> dict[str, Any]:
    return {"vs": c.get(f"/apis/{NET}/v1/virtualservices").json()["items"],
            "svc": c.get("/api/v1/services").json()["items"],
            "revision": revision(c)}


def test_everything_survives_sigkill(control_plane: ControlPlane) -> None:
    c = control_plane.client
    apply(c, vs("reviews"), service("reviews"))
    apply(c, vs("reviews", timeout="2s", labels={"v": "2"}))
    apply(c, vs("ratings", namespace="prod"))
    c.delete(f"{SVC_PATH}/reviews")
    before = _snapshot(c)
    assert before["revision"] == 4
    old_pid = control_plane.proc.pid

    assert control_plane.kill() == -9
    control_plane.restart()
    assert control_plane.proc.pid != old_pid
    c = control_plane.client
    after = _snapshot(c)
    assert after == before
    reviews = get_vs(c, "reviews").json()
    assert (reviews["metadata"]["resourceVersion"], reviews["metadata"]["generation"]) == (
        "2", 2)
    # revisions continue where they stopped, and history is still watchable
    nxt = apply(c, vs("new")).json()["results"][0]
    assert nxt["resourceVersion"] == "5"
    thread, events = _watch_in_thread(control_plane, f"/apis/{NET}/v1/virtualservices", 0, 4)
    _, *lines = _drain(thread, events)
    assert [int(e["object"]["metadata"]["resourceVersion"]) for e in lines] == [1, 2, 3, 5]


def test_graceful_sigterm_and_restart(control_plane: ControlPlane) -> None:
    c = control_plane.client
    apply(c, vs("reviews"), vs("ratings"))
    apply(c, vs("reviews", timeout="1s"))
    before = _snapshot(c)
    token = control_plane.token

    assert control_plane.terminate() == 0
    assert read_endpoints(control_plane.state_dir) is None  # removed on a clean stop
    control_plane.restart()
    assert control_plane.token == token  # the token survives restarts
    assert _snapshot(control_plane.client) == before
    assert control_plane.client.get("/version").json()["pid"] == control_plane.proc.pid


def test_second_control_plane_on_the_same_state_dir_refuses(
    control_plane: ControlPlane,
) -> None:
    apply(control_plane.client, vs("reviews"))
    endpoints = read_endpoints(control_plane.state_dir)
    second = subprocess.run(
        [sys.executable, "-m", "meshpilot.server", "--state-dir", str(control_plane.state_dir)],
        capture_output=True, text=True, timeout=30,
    )
    assert second.returncode == 3, second.stderr
    assert "another control plane" in second.stderr
    # the first one is untouched and still serving
    assert read_endpoints(control_plane.state_dir) == endpoints
    assert control_plane.proc.poll() is None
    assert get_vs(control_plane.client, "reviews").status_code == 200


def test_two_control_planes_side_by_side(control_plane_factory: Any) -> None:
    a: ControlPlane = control_plane_factory("a")
    b: ControlPlane = control_plane_factory("b")
    assert urlsplit(a.api).port != urlsplit(b.api).port
    assert a.token != b.token
    assert apply(a.client, vs("only-in-a")).status_code == 200
    assert apply(b.client, vs("only-in-b"), vs("also-b")).status_code == 200
    assert [i["metadata"]["name"] for i in a.client.get(VS_PATH).json()["items"]] == [
        "only-in-a"]
    assert [i["metadata"]["name"] for i in b.client.get(VS_PATH).json()["items"]] == [
        "also-b", "only-in-b"]
    assert (revision(a.client), revision(b.client)) == (1, 1)
    # each one's token is refused by the other
    with b.new_client(token=a.token) as cross:
        assert cross.get("/version").status_code == 401
    # stopping one leaves the other running
    a.terminate()
    assert b.client.get("/healthz").status_code == 200


def test_file_modes_of_the_state_dir(control_plane: ControlPlane) -> None:
    mode = stat.S_IMODE(os.stat(control_plane.state_dir).st_mode)
    assert mode == 0o700, oct(mode)
    token_mode = stat.S_IMODE(os.stat(control_plane.state_dir / "token").st_mode)
    assert token_mode == 0o600, oct(token_mode)
    assert len(control_plane.token) >= 32
    endpoints = read_endpoints(control_plane.state_dir)
    assert endpoints is not None
    assert control_plane.token not in json.dumps(endpoints)  # the token is not published


def test_api_binds_to_loopback_only(control_plane: ControlPlane) -> None:
    url = urlsplit(control_plane.api)
    assert url.hostname == "127.0.0.1"
    port = url.port
    assert port
    listening = Path("/proc/net/tcp")
    if listening.exists():
        rows = [line.split() for line in listening.read_text().splitlines()[1:]]
        local = {r[1] for r in rows if r[3] == "0A"}  # state LISTEN
        assert f"0100007F:{port:04X}" in local
        assert f"00000000:{port:04X}" not in local
    # reaching it on another local address fails
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        other = probe.getsockname()[0]
    except OSError:
        other = ""
    finally:
        probe.close()
    if other and not other.startswith("127."):
        with pytest.raises(OSError), socket.create_connection((other, port), timeout=2):
            pass


def test_restart_helper_and_endpoints_track_the_live_process(
    control_plane: ControlPlane,
) -> None:
    first = read_endpoints(control_plane.state_dir)
    assert first is not None and first["pid"] == control_plane.proc.pid
    control_plane.kill()
    # a crash leaves endpoints.json behind; the CLI and the fixture check its pid
    assert read_endpoints(control_plane.state_dir) == first
    control_plane.restart()
    second = read_endpoints(control_plane.state_dir)
    assert second is not None and second["pid"] == control_plane.proc.pid != first["pid"]
    assert second["api"] == control_plane.api
    wait_for(lambda: control_plane.client.get("/healthz").status_code == 200, timeout=5)


# --- security policies and Secrets ----------------------------------------------------

SEC = "security.istio.io"


def mesh_pa(name: str, mode: str = "STRICT") -> dict[str, Any]:
    return {"apiVersion": f"{SEC}/v1", "kind": "PeerAuthentication",
            "metadata": {"name": name, "namespace": "istio-system"},
            "spec": {"mtls": {"mode": mode}}}


def pa_diagnostics(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    """What ``meshpilot describe pa NAME -n istio-system`` shows."""
    return client.get(f"{MP}/diagnostics", params={
        "group": SEC, "kind": "PeerAuthentication", "namespace": "istio-system",
        "name": name}).json()["diagnostics"]


def test_peer_authentication_conflicts_are_warned_on_apply_and_describe(
    control_plane: ControlPlane,
) -> None:
    c = control_plane.client
    r = apply(c, mesh_pa("strict-b"), mesh_pa("permissive-a", "PERMISSIVE"))
    assert r.status_code == 200, r.text  # warnings: applied
    assert sorted((d["code"], d["object"], d["severity"]) for d in r.json()["diagnostics"]) == [
        ("MP2007", "PeerAuthentication istio-system/permissive-a", "warning"),
        ("MP2007", "PeerAuthentication istio-system/strict-b", "warning")]
    assert c.get(f"/apis/{SEC}/v1/namespaces/istio-system/peerauthentications/strict-b"
                 ).status_code == 200
    (shown,) = pa_diagnostics(c, "strict-b")
    assert shown["code"] == "MP2007" and "only the oldest, permissive-a, is enforced" in (
        shown["message"])
    # applied later, a policy is newer than both, whatever its name: the enforced one stays
    r = apply(c, mesh_pa("a-late"))
    assert [(d["code"], d["object"]) for d in r.json()["diagnostics"]] == [
        ("MP2007", "PeerAuthentication istio-system/a-late")]
    assert "only the oldest, permissive-a, is enforced" in r.json()["diagnostics"][0]["message"]


def test_custom_authorization_policy_is_refused_and_not_stored(
    control_plane: ControlPlane,
) -> None:
    c = control_plane.client
    policy = {"apiVersion": f"{SEC}/v1beta1", "kind": "AuthorizationPolicy",
              "metadata": {"name": "ext", "namespace": "default"},
              "spec": {"action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{}]}}
    r = apply(c, policy)
    assert r.status_code == 422
    assert [(d["code"], d["path"]) for d in errors_of(r)] == [("MP0035", "spec.action")]
    assert c.get(f"/apis/{SEC}/v1/namespaces/default/authorizationpolicies/ext"
                 ).status_code == 404
    assert revision(c) == 0


def test_tls_secret_with_the_wrong_key_is_refused_without_its_values(
    control_plane: ControlPlane,
) -> None:
    c = control_plane.client
    wrong = key_pem(OTHER_KEY)
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": {"name": "shop-cert", "namespace": "default"},
              "data": {"tls.crt": b64(CHAIN), "tls.key": b64(wrong)}}
    r = apply(c, secret)
    assert r.status_code == 422
    (d,) = errors_of(r)
    assert (d["code"], d["path"], d["line"]) == ("MP0030", "data.tls.key", 9)
    assert "data.tls.key" in d["message"]
    for line in wrong.decode().splitlines()[1:-1]:
        assert line not in r.text
    assert b64(wrong) not in r.text
    assert c.get("/api/v1/namespaces/default/secrets/shop-cert").status_code == 404

    secret["data"]["tls.key"] = b64(KEY)
    assert apply(c, secret).status_code == 200
    stored = c.get("/api/v1/namespaces/default/secrets/shop-cert").json()
    assert stored["type"] == "kubernetes.io/tls" and stored["data"]["tls.key"] == b64(KEY)


def test_a_watcher_that_never_reads_is_cut_off_with_410_and_resumes(
        control_plane_factory: Any) -> None:
    """Issue 18: a watch client that never reads must not make the server queue every
    write for it. With a backlog limit of 50 events (``--watch-backlog``), a watcher whose
    socket stays full while 5 MB of writes land is closed with Kubernetes' ERROR event
    (410 Expired) after what its buffers already held; the API kept answering, and a new
    watch from the last resourceVersion it saw gets the rest."""
    cp = control_plane_factory("backlog", args=["--watch-backlog", "50"])
    rv = cp.client.get(SVC_PATH).json()["metadata"]["resourceVersion"]
    host, port = urlsplit(cp.api).hostname, urlsplit(cp.api).port
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that never reads
    slow.connect((host, port))
    slow.sendall((f"GET {SVC_PATH}?watch=true&resourceVersion={rv}&timeoutSeconds=60 "
                  f"HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {cp.token}\r\n\r\n"
                  ).encode())
    big = "x" * 10_000
    for batch in range(10):
        docs = [service(f"s{batch}-{i}") for i in range(50)]
        for doc in docs:
            doc["metadata"]["annotations"] = {"padding": big}
        r = cp.client.post(f"{MP}/apply", json={"sources": [
            {"file": "many.yaml", "text": yaml.safe_dump_all(docs)}]})
        assert r.status_code == 200, r.text
        assert cp.client.get("/healthz").status_code == 200
    slow.settimeout(10)
    received = b""
    while True:
        chunk = slow.recv(1 << 20)
        if not chunk or b'"type": "ERROR"' in received[-4096:] + chunk:
            received += chunk
            break
        received += chunk
    slow.close()
    lines = [json.loads(line) for line in received.split(b"\r\n\r\n", 1)[1].splitlines()
             if line.strip().startswith(b"{")]
    assert lines[-1]["type"] == "ERROR" and lines[-1]["object"]["code"] == 410, lines[-1]
    seen = [e for e in lines if e["type"] == "ADDED"]
    assert 0 < len(seen) < 500  # cut off: it did not get all 500
    last = seen[-1]["object"]["metadata"]["resourceVersion"]
    r = cp.client.get(SVC_PATH, params={"watch": "true", "resourceVersion": last,
                                        "timeoutSeconds": "8"}, timeout=30)
    rest = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    names = {e["object"]["metadata"]["name"] for e in seen + rest if e["type"] == "ADDED"}
    assert len(names) == 500, (len(seen), len(rest), rest[-1:])
