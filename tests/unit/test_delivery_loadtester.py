"""The built-in load tester: hey parsing, background loads, Flagger's gate endpoints."""

from __future__ import annotations

import time

import httpx
import pytest
from starlette.testclient import TestClient

from meshpilot.delivery.loadtester import CommandError, LoadTester, parse_hey

CANARY = {"name": "podinfo", "namespace": "test"}


def test_parse_hey() -> None:
    cmd = parse_hey("hey -z 1m -q 10 -c 2 -m POST -H 'X-A: b' -d '{\"x\": 1}' "
                    "http://podinfo-canary.test:9898/echo")
    assert cmd.duration_s == 60 and cmd.qps == 10 and cmd.concurrency == 2
    assert cmd.method == "POST" and cmd.headers == (("X-A", "b"),) and cmd.body == '{"x": 1}'
    assert cmd.url == "http://podinfo-canary.test:9898/echo"
    assert parse_hey("hey -n 100 -c 5 http://x/").requests == 100
    with pytest.raises(CommandError, match="only hey"):
        parse_hey("curl http://x/")
    with pytest.raises(CommandError, match="URL"):
        parse_hey("hey -z 1m")
    with pytest.raises(CommandError, match="unknown hey flag"):
        parse_hey("hey -zz 1 http://x/")


def fake_backend() -> tuple[httpx.Client, list[str]]:
    hits: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hits.append(str(request.url))
        return httpx.Response(200)

    return httpx.Client(transport=httpx.MockTransport(handler)), hits


def test_background_load_runs_once_per_command() -> None:
    client, hits = fake_backend()
    tester = LoadTester(client=client)
    api = TestClient(tester.app)
    body = {**CANARY, "metadata": {"type": "cmd", "cmd": "hey -z 1s -q 20 -c 2 http://svc/"}}
    first = api.post("/", json=body)
    second = api.post("/", json=body)
    assert first.status_code == 200 and first.json()["started"] is True
    assert second.json()["started"] is False
    deadline = time.time() + 5
    while api.get("/status").json()["runs"][body["metadata"]["cmd"]]["running"]:
        assert time.time() < deadline
        time.sleep(0.05)
    assert 20 <= len(hits) <= 60  # about 2 workers x 20 qps x 1 s
    tester.stop_all()


def test_blocking_run_reports_result() -> None:
    client, hits = fake_backend()
    api = TestClient(LoadTester(client=client).app)
    result = api.post("/", json={**CANARY, "metadata": {"type": "bash",
                                                         "cmd": "hey -n 10 -c 2 http://svc/"}})
    assert result.status_code == 200 and result.json()["codes"] == {"200": 10}
    assert len(hits) == 10


def test_bad_command_is_refused() -> None:
    api = TestClient(LoadTester(client=fake_backend()[0]).app)
    # not hey, and commands are off: refused, saying how to allow them
    refused = api.post("/", json={"metadata": {"cmd": "rm -rf /"}})
    assert refused.status_code == 403 and "--loadtester-commands" in refused.text
    assert api.post("/", json={"metadata": {"cmd": "hey -zz 1 http://x/"}}).status_code == 400
    assert api.post("/", json={"metadata": {}}).status_code == 400


def test_gates_and_rollbacks_are_switched_only_with_the_api_token() -> None:
    """Issue 18: any local process reaches the tester's loopback port; opening a gate
    approves a promotion and opening a rollback forces one, so both take the API's
    token. The checks the controller's webhooks call stay open, as in Flagger."""
    api = TestClient(LoadTester(client=fake_backend()[0], gate_token="s3cret").app)
    for path in ("/gate/open", "/gate/close", "/rollback/open", "/rollback/close"):
        refused = api.post(path, json=CANARY)
        assert refused.status_code == 401 and ".meshpilot/token" in refused.text
        wrong = api.post(path, json=CANARY, headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401
    assert api.post("/gate/check", json=CANARY).status_code == 403  # still closed
    good = {"Authorization": "Bearer s3cret"}
    assert api.post("/gate/open", json=CANARY, headers=good).status_code == 202
    assert api.post("/gate/check", json=CANARY).status_code == 200


def test_gates() -> None:
    api = TestClient(LoadTester(client=fake_backend()[0]).app)
    assert api.post("/gate/approve", json=CANARY).status_code == 200
    assert api.post("/gate/halt", json=CANARY).status_code == 403
    assert api.post("/gate/check", json=CANARY).status_code == 403  # closed by default
    assert api.post("/gate/open", json=CANARY).status_code == 202
    assert api.post("/gate/check", json=CANARY).status_code == 200
    other = {"name": "other", "namespace": "test"}
    assert api.post("/gate/check", json=other).status_code == 403
    assert api.post("/gate/close", json=CANARY).status_code == 202
    assert api.post("/gate/check", json=CANARY).status_code == 403
    assert api.post("/rollback/check", json=CANARY).status_code == 403
    api.post("/rollback/open", json=CANARY)
    assert api.post("/rollback/check", json=CANARY).status_code == 200
    api.post("/rollback/close", json=CANARY)
    assert api.post("/rollback/check", json=CANARY).status_code == 403
    assert api.post("/gate/open", json={}).status_code == 400
