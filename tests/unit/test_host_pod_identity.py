"""A joined host's pod sidecar identity, agent and control plane in one process (the
agent's HTTP calls go straight to the control plane's book): the key is made on the host
(0600) and only its CSR and file name travel; the certificate is renewed with a new key
at about half its life, as Istio's agent rotates a workload's, and the control plane
then serves the new chain with the new key's file."""

from __future__ import annotations

import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.unit.test_host_pods import HOST_A, NID, dep, reported

from meshpilot.hosts.pods import HostPods as AgentPods
from meshpilot.mesh.model import ProxyNode
from meshpilot.runtime import Pod
from meshpilot.security.ca_files import load_or_create_self_signed_ca
from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.server.host_pods import HostPods


class Running:
    """The agent's runtime, running one pod whose sidecar is ``NID``."""

    def __init__(self) -> None:
        self.refreshed: list[tuple[str, dict[str, Any]]] = []

    def refresh_sidecar(self, node_id: str, bootstrap: dict[str, Any]) -> bool:
        self.refreshed.append((node_id, bootstrap))
        return True

    def pods(self) -> list[Pod]:
        return [Pod(name="web-abc-x1y2z", namespace="default", deployment="web", labels={},
                    ip="10.77.0.17", inbound=(), phase="Running", ready=True, restarts=0,
                    message="", template_hash="abc", started_at=None, admin_socket="",
                    node_id=NID)]


def _request(body: dict[str, Any]) -> dict[str, Any]:
    """What the control plane's pod-credential route reads of the agent's request."""
    return {"namespace": body["podNamespace"], "deployment": body["deployment"],
            "nodeId": body["nodeId"], "csr": body["csr"], "keyFile": body["keyFile"]}


def _agent(tmp_path: Path, post: Callable[[str, dict[str, Any]], dict[str, Any]],
           secure: Callable[[ProxyNode, str], dict[str, Any]],
           credential: dict[str, Any]) -> AgentPods:
    """Node node-b's pods agent, its runtime replaced by :class:`Running`."""
    agent = AgentPods(node="node-b", address="10.77.0.2", pod_addresses="10.77.0.16/29",
                      state_dir=tmp_path / "host", post=post, secure=secure,
                      credential=credential)
    agent.runtime.stop()
    agent.runtime = Running()  # type: ignore[assignment]
    return agent


def test_a_pod_sidecar_key_stays_on_its_host_and_is_renewed_at_half_life(
        tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    tokens = ProxyTokens(b"k" * 32)
    server = HostPods(tokens, lambda: ca, timedelta(hours=1))
    server.place([dep("web", nodeName="node-b")])
    server.sync(HOST_A, "node-b", [], {})
    sent: list[dict[str, Any]] = []

    def post(action: str, body: dict[str, Any]) -> dict[str, Any]:
        assert action == "pod-credential"
        sent.append(body)
        return server.credential(HOST_A, body["node"], _request(body))

    agent = _agent(tmp_path, post, lambda node, token: {"xdsToken": token},
                   {"namespace": "default", "entry": HOST_A.name, "hostToken": "t"})
    node = ProxyNode(id=NID, kind="sidecar", namespace="default", ip="10.77.0.17",
                     workload="web", name="web-abc-x1y2z", service_account="web-sa",
                     labels={"app": "web", "version": "v2"})  # as the Deployment says

    doc = agent._bootstrap(node, {})
    assert tokens.verify_proxy(node, doc["xdsToken"])
    key = Path(sent[0]["keyFile"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in str(sent[0])  # only the CSR and the key's file name
    server.sync(HOST_A, "node-b", [reported()], {})
    first = server.credentials()[NID]
    assert first.key_file == str(key)

    assert agent.renew_due() == 0  # not yet due
    assert agent.renew_due(datetime.now(UTC) + timedelta(minutes=31)) == 1
    renewed = server.credentials()[NID]
    assert renewed.key_file != first.key_file and Path(renewed.key_file).exists()
    assert renewed.chain_pem != first.chain_pem


def test_a_control_plane_without_a_pods_credential_has_the_host_issue_it_again(
        tmp_path: Path) -> None:
    """A restarted control plane (or a new leader) holds no joined pod's certificate (the
    key never left its host): its first sync names the pod, and the host issues it again
    with a new key."""
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    before = HostPods(ProxyTokens(b"k" * 32), lambda: ca, timedelta(hours=1))
    after = HostPods(ProxyTokens(b"k" * 32), lambda: ca, timedelta(hours=1))
    server = [before]
    for book in (before, after):
        book.place([dep("web", nodeName="node-b")])

    def post(action: str, body: dict[str, Any]) -> dict[str, Any]:
        return server[0].credential(HOST_A, body["node"], _request(body))

    agent = _agent(tmp_path, post, lambda node, token: {},
                   {})
    before.sync(HOST_A, "node-b", [], {})
    agent._bootstrap(ProxyNode(id=NID, kind="sidecar", namespace="default", ip="10.77.0.17",
                               workload="web", name="web-abc-x1y2z"), {})

    server[0] = after  # the control plane restarted
    after.sync(HOST_A, "node-b", [reported()], {})
    assert after.uncredentialed("node-b") == [NID]
    assert NID not in after.credentials()
    agent.reissue(after.uncredentialed("node-b"))
    assert after.uncredentialed("node-b") == []
    assert after.credentials()[NID].key_file.endswith("key-1.pem")


def test_a_new_xds_token_issued_with_a_certificate_restarts_the_pod_sidecar(
        tmp_path: Path) -> None:
    """An upgraded control plane (here: another token key, as another token binding
    would be) holds no credential of a running joined pod and has the host issue it
    again; its answer carries the sidecar's xDS token as issued now, which the sidecar's
    bootstrap must present, so the sidecar restarts with it. A re-issue that answers the
    token the bootstrap already has restarts nothing."""
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    node = ProxyNode(id=NID, kind="sidecar", namespace="default", ip="10.77.0.17",
                     workload="web", name="web-abc-x1y2z", service_account="web-sa",
                     labels={"app": "web", "version": "v2"})
    old_tokens, new_tokens = ProxyTokens(b"k" * 32), ProxyTokens(b"n" * 32)
    books = [HostPods(tokens, lambda: ca, timedelta(hours=1))
             for tokens in (old_tokens, old_tokens, new_tokens)]
    server = [books[0]]
    for book in books:
        book.place([dep("web", nodeName="node-b")])

    def post(action: str, body: dict[str, Any]) -> dict[str, Any]:
        return server[0].credential(HOST_A, body["node"], _request(body))

    agent = _agent(tmp_path, post, lambda node, token: {"xdsToken": token}, {})
    runtime = agent.runtime
    assert isinstance(runtime, Running)
    books[0].sync(HOST_A, "node-b", [], {})
    assert old_tokens.verify_proxy(node, agent._bootstrap(node, {})["xdsToken"])

    for book in books[1:]:  # restarted with the same key, then upgraded
        server[0] = book
        book.sync(HOST_A, "node-b", [reported()], {})
        agent.reissue(book.uncredentialed("node-b"))
        assert book.uncredentialed("node-b") == []
    ((refreshed, doc),) = runtime.refreshed  # only the upgrade's token restarts it
    assert refreshed == NID
    assert new_tokens.verify_proxy(node, doc["xdsToken"])
    assert not old_tokens.verify_proxy(node, doc["xdsToken"])
