"""The routes a joined host's agent calls for its pods, over HTTP (Starlette's test
client): authenticated by the host's credential from its join, bodies checked, and the
book's refusals passed on with their codes."""

from __future__ import annotations

import base64
import json
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from tests.unit.test_host_pods import HOST_A, NID, dep, reported
from tests.unit.test_host_registry import csr

from meshpilot.api.identity import ObjectKey
from meshpilot.security.ca_files import load_or_create_self_signed_ca
from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.server.host_pods import HostPods
from meshpilot.server.host_pods_api import API, HostPodsAPI

HOST = {"namespace": "default", "entry": HOST_A.name, "hostToken": "good", "node": "node-b"}


@pytest.fixture
def client(tmp_path: Path) -> tuple[TestClient, HostPods]:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    book = HostPods(ProxyTokens(b"k" * 32), lambda: ca, timedelta(hours=1))
    book.place([dep("web", nodeName="node-b")])

    def member(namespace: str, entry: str, token: str) -> ObjectKey | None:
        return HOST_A if (namespace, entry, token) == ("default", HOST_A.name, "good") \
            else None

    app = Starlette(routes=HostPodsAPI(book, member).routes())
    return TestClient(app), book


def packed(stats: dict[str, Any]) -> str:
    return base64.b64encode(zlib.compress(json.dumps(stats).encode())).decode()


def test_a_sync_answers_the_hosts_deployments_and_takes_its_pods_and_counters(
        client: tuple[TestClient, HostPods]) -> None:
    http, book = client
    r = http.post(f"{API}/pods", json={**HOST, "pods": [reported()], "deployments": {},
                                       "stats": {NID: {"stats": packed({"stats": []}),
                                                       "epoch": 7}}})
    assert r.status_code == 200, r.text
    assert [d["name"] for d in r.json()["deployments"]] == ["web"]
    assert r.json()["reissue"] == [NID]  # reported, and no certificate issued here yet
    [(pod, epoch, stats)] = book.sidecar_stats()
    assert (pod.name, epoch, json.loads(stats)) == ("web-abc-x1y2z", 7, {"stats": []})


@pytest.mark.parametrize(("body", "status", "code"), [
    ({**HOST, "hostToken": "forged"}, 403, None),
    ({**HOST, "entry": "someone-else"}, 403, None),
    ({**HOST, "node": "localhost"}, 422, "MP0083"),
    ({**HOST, "pods": "nope"}, 400, None),
    ({**HOST, "stats": {NID: {"stats": "not base64!", "epoch": 1}}}, 400, None),
    ({k: v for k, v in HOST.items() if k != "node"}, 400, None),
])
def test_a_sync_refused(client: tuple[TestClient, HostPods], body: dict[str, Any],
                        status: int, code: str | None) -> None:
    http, book = client
    r = http.post(f"{API}/pods", json=body)
    assert r.status_code == status, r.text
    if code:
        assert r.json()["diagnostics"][0]["code"] == code
    assert book.pods()[0].phase == "Pending"  # nothing taken: node-b is still unknown


def test_a_pod_credential_needs_the_hosts_credential_and_a_placed_pod(
        client: tuple[TestClient, HostPods]) -> None:
    http, _ = client
    assert http.post(f"{API}/pods", json={**HOST, "pods": [], "deployments": {}}
                     ).status_code == 200

    ask = {**HOST, "podNamespace": "default", "deployment": "web", "nodeId": NID,
           "csr": csr().decode(), "keyFile": "/h/k.pem"}
    ok = http.post(f"{API}/pod-credential", json=ask)
    assert ok.status_code == 200 and ok.json()["xdsToken"], ok.text
    assert http.post(f"{API}/pod-credential", json={**ask, "hostToken": "x"}).status_code == 403
    assert http.post(f"{API}/pod-credential", json={**ask, "deployment": "db"}
                     ).status_code == 403
    assert http.post(f"{API}/pod-credential", json={**ask, "extra": "1"}).status_code == 400


def test_a_replica_that_does_not_place_refuses_a_sync_and_takes_nothing(
        tmp_path: Path) -> None:
    """Kubernetes' controllers act only while they hold the lease (client-go's
    leaderelection): a replica that does not lead, or has not placed since it took the
    lead, answers 503 rather than an empty list that would have the host stop its pods."""
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    book = HostPods(ProxyTokens(b"k" * 32), lambda: ca, timedelta(hours=1))
    book.place([dep("web", nodeName="node-b")])
    placing = [False]
    app = Starlette(routes=HostPodsAPI(book, lambda *_: HOST_A, lambda: placing[0]).routes())
    http = TestClient(app)
    body = {**HOST, "pods": [reported()], "deployments": {}}
    r = http.post(f"{API}/pods", json=body)
    assert r.status_code == 503 and "sync again" in r.json()["message"], r.text
    assert book.pods()[0].phase == "Pending"  # its report not taken either
    placing[0] = True
    r = http.post(f"{API}/pods", json=body)
    assert r.status_code == 200 and [d["name"] for d in r.json()["deployments"]] == ["web"]
