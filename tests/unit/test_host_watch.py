"""The watch a joined host's agent holds open so it syncs at once, not at its next round:
the control plane's epoch (process, leadership, what the host's node runs), held while
unchanged and answered when it changes; the agent's side, which syncs on a new epoch and
when the watch comes back after a broken connection.

Istio's VM agents keep one long-lived xDS stream and resend their state when it
reconnects; meshpilot's host agent reports over HTTPS, so the watch stands for that
stream: its breaking and coming back is what makes the agent report again at once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from tests.unit.test_host_agent import JOINED, agent
from tests.unit.test_host_pods import HOST_A, dep

from meshpilot.api.identity import ObjectKey
from meshpilot.hosts.agent import JoinFailed
from meshpilot.security.ca_files import load_or_create_self_signed_ca
from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.server.host_pods import HostPods
from meshpilot.server.host_watch import PATH, HostWatch

CREDENTIAL = {"namespace": "default", "entry": "vm-10.77.0.2", "hostToken": "good"}


class Registry:
    """The two things the watch asks of the host registry, settable by the test."""

    def __init__(self) -> None:
        self.leads = True
        self.replicas: list[dict[str, Any]] = []

    def member(self, namespace: str, entry: str, token: str) -> ObjectKey | None:
        return HOST_A if token == "good" else None

    def leading(self) -> bool:
        return self.leads

    def reachable(self) -> list[dict[str, Any]]:
        return list(self.replicas)


def watch_client(registry: Registry, versions: dict[str, int],
                 stopping: list[bool] | None = None) -> tuple[HostWatch, TestClient]:
    watch = HostWatch(registry, lambda node: versions.get(node, 0),  # type: ignore[arg-type]
                      hold=2.0, step=0.02)
    flag = stopping if stopping is not None else [False]
    app = Starlette(routes=watch.routes(lambda: flag[0]))
    return watch, TestClient(app)


def ask(client: TestClient, since: str, node: str = "node-b") -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    r = client.post(PATH, json={**CREDENTIAL, "node": node, "since": since})
    assert r.status_code == 200, r.text
    return r.json(), time.monotonic() - started


def test_a_new_watch_is_answered_at_once_and_an_unchanged_one_is_held() -> None:
    registry = Registry()
    _, client = watch_client(registry, {})
    first, took = ask(client, "")
    assert first["epoch"] and took < 1.0
    again, held = ask(client, first["epoch"])
    assert again["epoch"] == first["epoch"] and held >= 1.9  # the 2 s hold, then the same


def test_a_changed_epoch_ends_the_hold() -> None:
    """A placement on the host's node, or a change of leader, answers a held watch
    within its step; another process (a restart) has another epoch."""
    registry, versions = Registry(), {"node-b": 0}
    watch, client = watch_client(registry, versions)
    first, _ = ask(client, "")
    threading.Timer(0.3, lambda: versions.__setitem__("node-b", 1)).start()
    placed, took = ask(client, first["epoch"])
    assert placed["epoch"] != first["epoch"] and took < 1.5
    threading.Timer(0.3, lambda: setattr(registry, "leads", False)).start()
    followed, took = ask(client, placed["epoch"])
    assert followed["epoch"] != placed["epoch"] and took < 1.5
    # a node with no placement changes does not see another node's
    other, _ = ask(client, "", node="node-c")
    versions["node-b"] = 2
    same, held = ask(client, other["epoch"], node="node-c")
    assert same["epoch"] == other["epoch"] and held >= 1.9
    restarted, _ = watch_client(registry, versions)
    assert restarted.epoch("node-b") != watch.epoch("node-b")


def test_a_stopping_server_ends_a_held_watch() -> None:
    stopping = [False]
    _, client = watch_client(Registry(), {}, stopping)
    first, _ = ask(client, "")
    threading.Timer(0.2, lambda: stopping.__setitem__(0, True)).start()
    _, took = ask(client, first["epoch"])
    assert took < 1.0


def test_a_watch_needs_the_host_credential() -> None:
    _, client = watch_client(Registry(), {})
    r = client.post(PATH, json={**CREDENTIAL, "hostToken": "stolen", "node": "", "since": ""})
    assert r.status_code == 403
    r = client.post(PATH, json={**CREDENTIAL, "node": 3, "since": ""})
    assert r.status_code == 400 and "since" in r.json()["message"]


def test_placing_a_deployment_changes_only_its_nodes_versions(tmp_path: Path) -> None:
    """Moving a Deployment from node-b to node-c changes both nodes' versions (the new
    node runs it; the old one stops once the new is ready); an unchanged placement
    changes none."""
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    pods = HostPods(ProxyTokens(b"k" * 32), lambda: ca, timedelta(hours=1))
    assert pods.version_of("node-b") == 0
    pods.place([dep("web", nodeName="node-b")])
    assert (pods.version_of("node-b"), pods.version_of("node-c")) == (1, 0)
    pods.place([dep("web", nodeName="node-b")])
    assert pods.version_of("node-b") == 1
    pods.place([dep("web", nodeName="node-c")])
    assert pods.version_of("node-b") >= 2 and pods.version_of("node-c") == 1
    pods.place([])
    assert pods.version_of("node-c") == 2


class Script:
    """The agent's calls to the control plane, answered from a list (an exception is
    raised as the call's failure)."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.done = threading.Event()

    def __call__(self, action: str, body: dict[str, Any], timeout: float = 10.0
                 ) -> dict[str, Any]:
        assert action == "watch"
        if not self.answers:
            self.done.set()
            raise JoinFailed("watch refused (403): gone")
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dict(answer, since=body["since"])


@pytest.mark.parametrize(("answers", "syncs"), [
    ([{"epoch": "a"}, {"epoch": "a"}, {"epoch": "a"}], 0),
    ([{"epoch": "a"}, {"epoch": "b"}], 1),
    ([{"epoch": "a"}, JoinFailed("no control plane answered"), {"epoch": "a"}], 1),
    ([JoinFailed("no control plane answered"), JoinFailed("no control plane answered"),
      {"epoch": "a"}, {"epoch": "a"}], 1),
])
def test_the_agent_syncs_on_a_new_epoch_or_a_watch_back_after_a_break(
        tmp_path: Path, answers: list[Any], syncs: int) -> None:
    a = agent(tmp_path)
    a.joined = {**JOINED, "hostToken": "h"}
    script = Script(answers)
    a._post = script  # type: ignore[method-assign]
    woken = []
    a.sync_now = lambda: woken.append(1)  # type: ignore[method-assign]
    thread = a.start_watch()
    thread.join(timeout=10)
    assert script.done.is_set() and not thread.is_alive()
    assert len(woken) == syncs


def test_sync_now_wakes_the_report_loop_at_once(tmp_path: Path) -> None:
    a = agent(tmp_path)
    started = time.monotonic()
    threading.Timer(0.1, a.sync_now).start()
    a._pause(10.0)
    assert time.monotonic() - started < 5.0
