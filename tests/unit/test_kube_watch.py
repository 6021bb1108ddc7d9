"""Watch bookmarks (meshpilot.server.kube_watch and the API's watch), as client-go's
informers ask for them with allowWatchBookmarks=true: a BOOKMARK event carrying only
the kind and the resourceVersion the watch has delivered up to, changes of other kinds
included; none for a client that did not ask, or that watches Tables."""

from __future__ import annotations

import json
from typing import Any

from starlette.testclient import TestClient

from meshpilot.server.api import create_app
from meshpilot.server.config_service import ConfigService
from meshpilot.server.kube_watch import Bookmarks
from meshpilot.store import SqliteStore

CMS = "/api/v1/namespaces/default/configmaps"


def test_a_bookmark_is_due_every_period_and_carries_the_newest_version_seen() -> None:
    marks = Bookmarks("v1", "ConfigMap", 5, 10.0, enabled=True)
    assert marks.due(100.0) == []  # the first look starts the clock
    marks.saw(7)
    marks.saw(6)
    (line,) = marks.due(110.0)
    assert json.loads(line) == {"type": "BOOKMARK", "object": {
        "kind": "ConfigMap", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}}}
    assert marks.due(115.0) == []
    assert Bookmarks("v1", "ConfigMap", 5, 0.0, enabled=False).due(1e9) == []


def lines(client: TestClient, query: str, **headers: str) -> list[dict[str, Any]]:
    with client.stream("GET", f"{CMS}?watch=true&timeoutSeconds=1.5&{query}",
                       headers={"Accept": "application/json", **headers}) as r:
        assert r.status_code == 200
        return [json.loads(x) for x in r.iter_lines() if x]


def test_a_watch_sends_bookmarks_only_when_asked(store: SqliteStore) -> None:
    client = TestClient(create_app(ConfigService(store), "t", {}, bookmark_seconds=0.3),
                        headers={"Authorization": "Bearer t"})
    for name in ("a", "b"):
        r = client.post(CMS, json={"metadata": {"name": name}, "data": {"k": "v"}},
                        headers={"Accept": "application/json"})
        assert r.status_code == 201, r.text
    first = int(client.get(f"{CMS}/a").json()["metadata"]["resourceVersion"])
    r = client.post("/api/v1/namespaces/default/services", json={
        "metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}})
    assert r.status_code == 200, r.text
    newest = store.revision()

    got = lines(client, f"resourceVersion={first}&allowWatchBookmarks=true")
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in got
            if e["type"] != "BOOKMARK"] == [("ADDED", "b")]
    marks = [e for e in got if e["type"] == "BOOKMARK"]
    assert marks, got
    # the Service's change is past too: the bookmark says so
    assert marks[-1]["object"] == {"kind": "ConfigMap", "apiVersion": "v1",
                                   "metadata": {"resourceVersion": str(newest)}}
    assert all(e["type"] != "BOOKMARK" for e in lines(client, f"resourceVersion={first}"))
    table = "application/json;as=Table;v=v1;g=meta.k8s.io"
    assert all(e["type"] != "BOOKMARK" for e in lines(
        client, "allowWatchBookmarks=true", Accept=table))
