"""The control plane's side of pods on joined hosts (meshpilot.server.host_pods), with a
real CA and a fake clock: which Deployments a host's node runs, what a host may claim,
and what readers see.

Kubernetes behaviour followed: a pod bound to a node no node has stays Pending with the
reason Unschedulable; a node's pods leave the endpoints when the node stops reporting
(the node controller marks them not ready); a node name is unique in the cluster.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from tests.builders import deployment
from tests.unit.test_host_registry import Clock, csr

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kubernetes import Deployment
from meshpilot.hosts.pods import HostPods as AgentPods
from meshpilot.mesh.model import InboundPort, ProxyNode, node_from_metadata, node_to_metadata
from meshpilot.mesh.tcp_outbound import TcpTarget
from meshpilot.runtime import LocalRuntime, Pod
from meshpilot.runtime.runtime import HostSide
from meshpilot.security.ca_files import load_or_create_self_signed_ca
from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.server.controlplane import pod_workload
from meshpilot.server.host_pods import HostPods, HostPodsRefused
from meshpilot.server.placed_runtime import PlacedRuntime
from meshpilot.server.shared_endpoints import instance as shared_instance
from meshpilot.server.shared_endpoints import record as shared_record
from meshpilot.xds.translate.clusters import inbound as inbound_clusters

HOST_A = ObjectKey("networking.istio.io", "WorkloadEntry", "default", "vm-10.77.0.2")
HOST_B = ObjectKey("networking.istio.io", "WorkloadEntry", "default", "vm-10.77.0.3")
NID = "sidecar~10.77.0.17~web-abc-x1y2z.default~default.svc.cluster.local"


def dep(name: str, container: dict[str, Any] | None = None,
        **pod_spec: Any) -> tuple[str, str, Deployment]:
    body = deployment(name, labels={"app": name, "version": "v2"}, pod_spec={
        "serviceAccountName": "web-sa", **pod_spec},
        containers=[{"name": "app", "command": ["sleep", "60"], **(container or {})}])
    return "default", name, Deployment.model_validate(body)


def reported(name: str = "web-abc-x1y2z", deployment_name: str = "web", ready: bool = True,
             **more: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "deployment": deployment_name,
            "ip": "10.77.0.17", "phase": "Running", "ready": ready, "restarts": 0,
            "templateHash": "abc", "nodeId": NID, "labels": {"app": "intruder"},
            "inbound": [{"containerPort": 8080, "appPort": 40001, "name": "http"}], **more}


@pytest.fixture
def book(tmp_path: Path) -> tuple[HostPods, Clock]:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    clock = Clock()
    return HostPods(ProxyTokens(b"k" * 32), lambda: ca, timedelta(hours=1), timeout=5.0,
                    clock=clock), clock


def test_deployments_naming_another_node_are_not_run_here(book: tuple[HostPods, Clock]) -> None:
    pods, _ = book
    here = pods.place([dep("local"), dep("web", nodeName="node-b"),
                       dep("api", nodeSelector={"kubernetes.io/hostname": "localhost"})])
    assert [name for _, name, _ in here] == ["local", "api"]
    assert pods.placed("default", "web") and not pods.placed("default", "local")


def test_pods_wait_unschedulable_until_a_host_declares_the_node(
        book: tuple[HostPods, Clock]) -> None:
    pods, _ = book
    pods.place([dep("web", nodeName="node-b")])
    [pending] = pods.pods()
    assert (pending.phase, pending.reason, pending.ip, pending.node) == (
        "Pending", "Unschedulable", "", "node-b")
    assert "node-b" in pending.message
    status = pods.deployment_status("default", "web")
    assert status is not None and status["readyReplicas"] == 0 and "node-b" in status["error"]

    answer = pods.sync(HOST_A, "node-b", [reported()], {"default/web": {
        "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "templateHash": "abc",
        "specHash": "abc", "error": None}})
    assert [a["name"] for a in answer] == ["web"]
    assert answer[0]["deployment"]["spec"]["template"]["spec"]["nodeName"] == "node-b"
    [pod] = pods.pods()
    assert (pod.name, pod.ready, pod.node, pod.ip) == ("web-abc-x1y2z", True, "node-b",
                                                       "10.77.0.17")
    # on its host's network: the instance names the host's WorkloadEntry, also as a
    # replica shares it with the others
    assert pod.host_entry == ("default", "vm-10.77.0.2")
    workload = pod_workload(pod)
    assert workload.host_entry == ("default", "vm-10.77.0.2")
    assert shared_instance(shared_record(workload)) == workload
    # the template's labels and service account, never what the host says
    assert dict(pod.labels) == {"app": "web", "version": "v2"}
    assert pod.service_account == "web-sa"
    status = pods.deployment_status("default", "web")
    assert status is not None and status["readyReplicas"] == 1 and status["error"] is None


def test_a_host_cannot_claim_pods_of_deployments_not_placed_on_its_node(
        book: tuple[HostPods, Clock]) -> None:
    pods, _ = book
    pods.place([dep("web", nodeName="node-b"), dep("db", nodeName="node-c"), dep("local")])
    pods.sync(HOST_A, "node-b", [reported(), reported("db-abc-aaaaa", "db"),
                                 reported("local-abc-bbbbb", "local"),
                                 reported("other-name", "web"), "not a pod"], {})
    assert [p.name for p in pods.pods() if p.ip] == ["web-abc-x1y2z"]


def test_a_silent_hosts_pods_leave_the_endpoints(book: tuple[HostPods, Clock]) -> None:
    pods, clock = book
    pods.place([dep("web", nodeName="node-b")])
    pods.sync(HOST_A, "node-b", [reported()], {"default/web": {"readyReplicas": 1}})
    clock.now += 6
    [pod] = pods.pods()
    assert not pod.ready and "stopped reporting" in pod.message
    status = pods.deployment_status("default", "web")
    assert status is not None and status["readyReplicas"] == 0 and "node-b" in status["error"]


def test_a_host_silent_past_the_grace_is_forgotten_and_its_pods_pending_again(
        book: tuple[HostPods, Clock]) -> None:
    pods, clock = book
    pods.grace = 30.0
    pods.place([dep("web", nodeName="node-b")])
    pods.sync(HOST_A, "node-b", [reported()], {})
    clock.now += 31
    assert "no joined host" in (pods.deployment_status("default", "web") or {})["error"]
    [pod] = pods.pods()
    assert (pod.phase, pod.reason, pod.ip) == ("Pending", "Unschedulable", "")


def test_a_move_between_joined_hosts_keeps_the_old_pods_until_the_new_are_ready(
        book: tuple[HostPods, Clock]) -> None:
    """Kubernetes' rolling update (maxUnavailable 0): a template now naming node-c keeps
    node-b running the old one, its pod an endpoint, until node-c reports every replica
    of the new template ready; then node-b is told to run nothing. A Deployment deleted
    meanwhile stops at once."""
    pods, clock = book
    ready = {"default/web": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}}
    pods.place([dep("web", nodeName="node-b")])
    pods.sync(HOST_A, "node-b", [reported()], ready)
    pods.place([dep("web", nodeName="node-c")])
    pods.sync(HOST_B, "node-c", [], {})
    assert [a["name"] for a in pods.sync(HOST_A, "node-b", [reported()], ready)] == ["web"]
    assert [p.name for p in pods.pods() if p.ready] == ["web-abc-x1y2z"]  # still serving
    renewed = pods.credential(HOST_A, "node-b", {  # its sidecar's renewal still answered
        "namespace": "default", "deployment": "web", "nodeId": NID,
        "csr": csr().decode(), "keyFile": "/var/lib/h/pod.key"})
    assert renewed["certificateChain"]

    clock.now += 1
    new_pod = reported("web-def-aaaaa", ready=False, ip="10.77.0.33", nodeId=NID.replace(
        "10.77.0.17~web-abc-x1y2z", "10.77.0.33~web-def-aaaaa"))
    pods.sync(HOST_B, "node-c", [new_pod], {"default/web": {"readyReplicas": 0,
                                                            "updatedReplicas": 1}})
    assert pods.sync(HOST_A, "node-b", [reported()], ready)  # not ready there yet
    pods.sync(HOST_B, "node-c", [{**new_pod, "ready": True}], ready)
    assert pods.sync(HOST_A, "node-b", [reported()], ready) == []  # now it stops
    # the old pod leaves the endpoints as its host is told to stop it (and drains it)
    assert {(p.node, p.ready) for p in pods.pods()} == {("node-c", True)}

    pods.place([dep("api", nodeName="node-b")])  # a move, then deleted before it landed
    pods.sync(HOST_A, "node-b", [], {})
    pods.place([dep("api", nodeName="node-c")])
    assert [a["name"] for a in pods.sync(HOST_A, "node-b", [], {})] == ["api"]
    pods.place([])
    assert pods.sync(HOST_A, "node-b", [], {}) == []


@pytest.mark.parametrize("name", ["localhost", "Node_B", "-b", "x" * 64])
def test_a_node_name_that_is_no_dns_label_or_the_control_planes_is_refused(
        book: tuple[HostPods, Clock], name: str) -> None:
    pods, _ = book
    with pytest.raises(HostPodsRefused) as refused:
        pods.sync(HOST_A, name, [], {})
    assert refused.value.code == "MP0083"


def test_a_node_name_is_one_hosts_while_it_reports(book: tuple[HostPods, Clock]) -> None:
    pods, clock = book
    pods.sync(HOST_A, "node-b", [], {})
    with pytest.raises(HostPodsRefused) as refused:
        pods.sync(HOST_B, "node-b", [], {})
    assert refused.value.status == 409 and refused.value.code == "MP0083"
    assert HOST_A.name in str(refused.value)
    clock.now += 6  # the first host went silent: the name may be taken over
    pods.sync(HOST_B, "node-b", [], {})


def test_a_pod_sidecar_credential_only_for_a_pod_placed_on_the_hosts_node(
        book: tuple[HostPods, Clock]) -> None:
    pods, clock = book
    pods.place([dep("web", nodeName="node-b"), dep("db", nodeName="node-c")])
    pods.sync(HOST_A, "node-b", [], {})
    ask = {"namespace": "default", "deployment": "web", "nodeId": NID,
           "csr": csr().decode(), "keyFile": "/var/lib/h/pod.key"}
    answer = pods.credential(HOST_A, "node-b", ask)
    cert = x509.load_pem_x509_certificate(answer["certificateChain"].encode())
    uris = cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)
    assert uris == ["spiffe://cluster.local/ns/default/sa/web-sa"]
    # the xDS token binds the pod as its host's runtime describes it from the Deployment
    sidecar = ProxyNode(id=NID, kind="sidecar", namespace="default", ip="10.77.0.17",
                        workload="web", name="web-abc-x1y2z", service_account="web-sa",
                        labels={"app": "web", "version": "v2"})
    tokens = ProxyTokens(b"k" * 32)
    assert tokens.verify_proxy(sidecar, answer["xdsToken"])
    for claimed in ({"labels": {"app": "intruder"}}, {"service_account": "default"},
                    {"workload": "db"}, {"namespace": "other"}):
        assert not tokens.verify_proxy(replace(sidecar, **claimed), answer["xdsToken"])
    # served over SDS (key named by its file there) only while the pod is reported
    assert NID not in pods.credentials()
    pods.sync(HOST_A, "node-b", [reported()], {})
    assert pods.credentials()[NID].key_file == "/var/lib/h/pod.key"

    # a credential is kept a while for a pod not reported yet (it is issued first) ...
    pods.sync(HOST_A, "node-b", [], {})
    pods.sync(HOST_A, "node-b", [reported()], {})
    assert pods.uncredentialed("node-b") == [] and NID in pods.credentials()
    # ... and forgotten once its pod is gone for good
    pods.sync(HOST_A, "node-b", [], {})
    clock.now += 61
    pods.sync(HOST_A, "node-b", [], {})
    pods.sync(HOST_A, "node-b", [reported()], {})
    assert pods.uncredentialed("node-b") == [NID] and NID not in pods.credentials()

    for refused in ({**ask, "deployment": "db"},  # placed on another node
                    {**ask, "nodeId": NID.replace("web-", "db-")}):  # another's pod
        with pytest.raises(HostPodsRefused) as caught:
            pods.credential(HOST_A, "node-b", refused)
        assert caught.value.status == 403
    with pytest.raises(HostPodsRefused):  # another host, claiming node-b's pods
        pods.credential(HOST_B, "node-b", ask)


class FakeLocal:
    """The host's own runtime: what it was last told to run, and its ready pods."""

    def __init__(self) -> None:
        self.running: list[str] = []
        self.ready = 0

    def deployment_status(self, namespace: str, name: str) -> dict[str, Any]:
        return {"readyReplicas": self.ready, "updatedReplicas": self.ready}

    def sync(self, deployments: Any, configs: Any = None, tcp_targets: Any = None) -> None:
        self.running = [name for _, name, _ in deployments]

    def pods(self) -> list[Pod]:
        return []


def test_a_deployment_moving_to_a_joined_host_keeps_its_pods_here_until_ready_there(
        book: tuple[HostPods, Clock]) -> None:
    """As a rolling update keeps the old pods until the new ones are ready."""
    pods, _ = book
    local = FakeLocal()
    runtime = PlacedRuntime(local, pods)  # type: ignore[arg-type]
    runtime.sync([dep("web")])
    assert local.running == ["web"]
    runtime.sync([dep("web", nodeName="node-b")])
    assert local.running == ["web"]
    pods.sync(HOST_A, "node-b", [reported(ready=False)], {"default/web": {
        "readyReplicas": 0, "updatedReplicas": 1}})
    runtime.sync([dep("web", nodeName="node-b")])
    assert local.running == ["web"]
    pods.sync(HOST_A, "node-b", [reported()], {"default/web": {
        "readyReplicas": 1, "updatedReplicas": 1}})
    runtime.sync([dep("web", nodeName="node-b")])
    assert local.running == []


def test_a_joined_hosts_pod_takes_its_apps_calls_on_loopback_only() -> None:
    """Its routable address is reachable by other hosts; its outbound proxy must not be
    (as the joined host's own sidecar listens on 127.0.0.1 only)."""
    def secure(node: Any, doc: dict[str, Any]) -> dict[str, Any]:
        return doc

    joined = HostSide("node-b", "10.77.5.2", secure)
    assert joined.outbound_address("10.77.5.17") == "127.77.5.17"
    assert joined.outbound_address("192.0.0.9") == "127.254.0.9"  # not the host's 127.0.0.x
    assert HostSide().outbound_address("127.10.0.7") == "127.10.0.7"  # here: the pod's own


def test_a_joined_hosts_pod_app_listens_on_its_loopback_twin_only() -> None:
    """No plaintext across hosts: the app behind a joined pod's sidecar binds the
    loopback twin of the pod's address (its ``POD_IP``), and the sidecar's inbound
    cluster hands requests there, so another host reaches the app only through the
    sidecar's mutual TLS (Istio's sidecar model, where the app is reached through its
    proxy); Kubernetes' ``status.podIP`` still reads the pod's routable address."""
    joined = HostSide("node-b", "10.77.5.2", lambda node, doc: doc)
    _, _, web = dep("web", {"env": [{"name": "MY_IP", "valueFrom": {
        "fieldRef": {"fieldPath": "status.podIP"}}}]})
    env = LocalRuntime._env(web.spec.template.spec.containers[0], ip="10.77.5.17",
                            pod="web-1", namespace="default", names={"http": 8080},
                            app_ports={8080: 40001}, labels={}, host=joined)
    assert env["POD_IP"] == "127.77.5.17" and env["PORT"] == "40001"
    assert env["MY_IP"] == "10.77.5.17"
    assert {"127.77.5.17", "10.77.5.17"} <= set(env["NO_PROXY"].split(","))
    here = LocalRuntime._env(web.spec.template.spec.containers[0], ip="127.10.0.7",
                             pod="web-1", namespace="default", names={}, app_ports={},
                             labels={})
    assert here["POD_IP"] == "127.10.0.7"  # the control plane's host: as before

    node = ProxyNode(id=NID, kind="sidecar", namespace="default", ip="10.77.5.17",
                     app_ip="127.77.5.17", inbound=(InboundPort(8080, 40001, "http"),))
    assert node_from_metadata(NID, node_to_metadata(node)) == node
    [cluster] = inbound_clusters(node)
    [address] = [e.endpoint.address.socket_address
                 for group in cluster.load_assignment.endpoints for e in group.lb_endpoints]
    assert (address.address, address.port_value) == ("127.77.5.17", 40001)
    [plain] = inbound_clusters(ProxyNode(id=NID, kind="sidecar", namespace="default",
                                         ip="127.10.0.7", inbound=node.inbound))
    assert plain.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address \
        .socket_address.address == "127.10.0.7"


def test_a_host_gets_only_the_configmaps_and_secrets_its_deployments_read(
        book: tuple[HostPods, Clock]) -> None:
    """As a kubelet is sent only the Secrets of the pods bound to its node."""
    pods, _ = book
    reads = {"envFrom": [{"secretRef": {"name": "web-secret"}},
                         {"configMapRef": {"name": "web-config"}}]}
    configs = {("Secret", "default", "web-secret"): {"token": b"s3cret"},
               ("ConfigMap", "default", "web-config"): {"mode": b"fast"},
               ("Secret", "default", "db-secret"): {"password": b"no"}}
    pods.place([dep("web", reads, nodeName="node-b")], configs)
    [answer] = pods.sync(HOST_A, "node-b", [], {})
    sent = {(c["kind"], c["name"]): c["data"] for c in answer["configs"]}
    assert sent == {("Secret", "web-secret"): {"token": "czNjcmV0"},
                    ("ConfigMap", "web-config"): {"mode": "ZmFzdA=="}}


def test_the_agent_runs_what_it_is_sent_with_the_configs_its_pods_read(
        tmp_path: Path) -> None:
    """The agent's side of a sync: the answer's Deployments and their ConfigMaps and
    Secrets go to its runtime as the control plane's own runtime gets them."""
    _, _, web = dep("web", nodeName="node-b")
    answer = {"deployments": [{
        "namespace": "default", "name": "web",
        "deployment": web.model_dump(mode="json", by_alias=True, exclude_none=True),
        "configs": [{"kind": "Secret", "namespace": "default", "name": "web-secret",
                     "data": {"token": "czNjcmV0"}}]}],
              "tcpTargets": [{"namespace": "default", "service": "tcp-echo",
                              "host": "tcp-echo.default.svc.cluster.local", "port": 9000,
                              "port_name": "tcp"}]}
    sent: list[dict[str, Any]] = []

    def post(action: str, body: dict[str, Any]) -> dict[str, Any]:
        sent.append(body)
        return answer

    agent = AgentPods(node="node-b", address="10.77.0.2", pod_addresses="10.77.0.16/29",
                      state_dir=tmp_path, post=post, secure=lambda node, token: {},
                      credential={"namespace": "default", "entry": "e", "hostToken": "t"})
    agent.runtime.stop()
    synced: list[Any] = []

    class Recorder:
        def pods(self) -> list[Pod]:
            return []

        def deployment_status(self, namespace: str, name: str) -> dict[str, Any]:
            return {"replicas": 0}

        def sync(self, deployments: Any, configs: Any = None, tcp: Any = None) -> None:
            synced.append((deployments, configs, tcp))

    agent.runtime = Recorder()  # type: ignore[assignment]
    agent.sync()
    [(deployments, configs, tcp)] = synced
    assert tcp == (TcpTarget("default", "tcp-echo", "tcp-echo.default.svc.cluster.local",
                             9000, "tcp"),)
    assert [(ns, name) for ns, name, _ in deployments] == [("default", "web")]
    assert configs == {("Secret", "default", "web-secret"): {"token": b"s3cret"}}
    assert sent[0]["node"] == "node-b" and sent[0]["deployments"] == {}
    agent.sync()  # the next sync reports the Deployment's counts
    assert sent[1]["deployments"] == {"default/web": {"replicas": 0}}


def test_a_deployment_moving_back_here_keeps_its_pods_on_the_joined_host_until_ready_here(
        book: tuple[HostPods, Clock]) -> None:
    """The other way: the joined host is still sent the old Deployment (its pods stay
    endpoints) until this host's new pods are ready."""
    pods, _ = book
    local = FakeLocal()
    runtime = PlacedRuntime(local, pods)  # type: ignore[arg-type]
    runtime.sync([dep("web", nodeName="node-b")])
    pods.sync(HOST_A, "node-b", [reported()], {"default/web": {
        "readyReplicas": 1, "updatedReplicas": 1}})
    runtime.sync([dep("web", nodeName="node-b")])
    assert local.running == []

    runtime.sync([dep("web")])  # back to the control plane's host
    assert local.running == ["web"]
    [sent] = pods.sync(HOST_A, "node-b", [reported()], {})
    assert sent["deployment"]["spec"]["template"]["spec"]["nodeName"] == "node-b"
    assert [p.name for p in pods.pods() if p.ready] == ["web-abc-x1y2z"]

    local.ready = 1
    runtime.sync([dep("web")])
    assert local.running == ["web"]
    assert pods.sync(HOST_A, "node-b", [], {}) == []  # the host stops its pods


def test_a_host_gets_the_tcp_service_ports_of_its_deployments_namespaces(
        book: tuple[HostPods, Clock]) -> None:
    pods, _ = book
    here = TcpTarget("default", "tcp-echo", "tcp-echo.default.svc.cluster.local", 9000, "tcp")
    other = TcpTarget("shop", "db", "db.shop.svc.cluster.local", 5432, "tcp")
    pods.place([dep("web", nodeName="node-b")], tcp_targets=[here, other])
    assert pods.tcp_targets("node-b") == [{
        "namespace": "default", "service": "tcp-echo",
        "host": "tcp-echo.default.svc.cluster.local", "port": 9000, "port_name": "tcp",
        "entry": False, "export_to": ()}]
    assert pods.tcp_targets("node-c") == []


def test_a_host_gets_the_service_entry_ports_exported_to_its_deployments_namespaces(
        book: tuple[HostPods, Clock]) -> None:
    """A ServiceEntry's TCP port reaches every namespace its exportTo names (as for
    pods here, docs/tcp.md), so a joined host's pods get its variables too."""
    pods, _ = book
    everywhere = TcpTarget("ops", "db.example.com", "db.example.com", 27017, "mongo",
                           entry=True, export_to=("*",))
    own_only = TcpTarget("ops", "cache.example.com", "cache.example.com", 6379, "redis",
                         entry=True, export_to=(".",))
    pods.place([dep("web", nodeName="node-b")], tcp_targets=[everywhere, own_only])
    assert [t["host"] for t in pods.tcp_targets("node-b")] == ["db.example.com"]


def test_the_runtime_places_only_once_synced_as_the_leader(
        book: tuple[HostPods, Clock]) -> None:
    """Whether joined hosts may take its placement: not before its first sync, nor after
    a sync of a replica that does not lead (which places nothing)."""
    pods, _ = book
    runtime = PlacedRuntime(FakeLocal(), pods)  # type: ignore[arg-type]
    assert runtime.placing is False
    runtime.sync([dep("web", nodeName="node-b")])
    assert runtime.placing is True
    runtime.sync([], placing_here=False)
    assert runtime.placing is False
