"""The local runtime with real processes: demo apps plus real Envoy sidecars.

The sidecars get their configuration from a real xDS server that gives them none (no
clusters, no listeners), so they go LIVE with nothing to route: these tests are about the
pods themselves (addresses, environment, probes, sidecar readiness, restarts, scaling,
rollouts, shutdown), not about traffic through the mesh.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.builders import DEMO_APP
from tests.builders import deployment as deployment_body
from tests.conftest import process_alive, wait_for

from meshpilot.api.kubernetes import Deployment
from meshpilot.mesh.tcp_outbound import FIRST_PORT, TcpTarget
from meshpilot.proxy.admin import AdminClient
from meshpilot.proxy.ports import free_port
from meshpilot.runtime import ImageMap, IpAllocator, LocalRuntime, Pod
from meshpilot.runtime.pod import SIDECAR_NOT_LIVE
from meshpilot.xds import XdsSnapshot, types
from meshpilot.xds.server import XdsServer


def deployment(
    name: str, *, replicas: int = 1, version: str = "v1", command: list[str] | None = None,
    image: str | None = None, probe: dict[str, Any] | None = None,
    strategy: str | None = None, args: list[str] | None = None,
) -> Deployment:
    container: dict[str, Any] = {
        "name": "app",
        "args": args if args is not None else ["--version", version],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": probe or {"httpGet": {"path": "/healthz", "port": 8080}},
        "env": [{"name": "GREETING", "value": "hello $(POD_NAME)"}],
    }
    if image is not None:
        container["image"] = image
    if command is not None or image is None:
        container["command"] = command if command is not None else DEMO_APP
    body = deployment_body(
        name, containers=[container], labels={"app": name, "version": version},
        selector={"app": name}, replicas=replicas, namespace=None,
        pod_spec={"terminationGracePeriodSeconds": 5},
        **({"strategy": {"type": strategy}} if strategy else {}),
    )
    return Deployment.model_validate(body)


class Harness:
    def __init__(self, rt: LocalRuntime) -> None:
        self.rt = rt
        self.changes = 0
        self.stopped: list[tuple[Pod, list[bool]]] = []  # pod, its app pids alive then

    def pods(self, deployment: str | None = None) -> list[Pod]:
        return [p for p in self.rt.pods() if deployment in (None, p.deployment)]

    def ready(self, deployment: str, count: int, timeout: float = 15.0,
              version: str | None = None) -> list[Pod]:
        """Wait until the deployment has exactly ``count`` pods, all ready (and of
        ``version``), none terminating."""

        def check() -> list[Pod] | None:
            pods = self.pods(deployment)
            if len(pods) == count and all(
                p.ready and version in (None, p.labels["version"]) for p in pods
            ):
                return pods
            return None

        return wait_for(check, timeout=timeout)


def empty_xds(port: int = 0) -> XdsServer:
    """A real xDS server that gives every proxy an empty configuration (which takes a
    sidecar to LIVE)."""
    server = XdsServer(authenticate=lambda node, meta: None, port=port)
    server.start()
    server.publish(XdsSnapshot(1, lambda node: {types.CLUSTER: {}, types.LISTENER: {}}))
    return server


@pytest.fixture
def xds() -> Iterator[XdsServer]:
    server = empty_xds()
    yield server
    server.stop()


@pytest.fixture
def runtimes(tmp_path: Path, xds: XdsServer) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []
    all_pids: set[int] = set()

    def make(name: str = "rt", images: ImageMap | None = None,
             xds_port: int | None = None) -> Harness:
        harness: Harness

        def on_change() -> None:
            harness.changes += 1
            for p in harness.rt.pods():
                all_pids.update(p.pids)
                if p.sidecar_pid:
                    all_pids.add(p.sidecar_pid)

        def before_stop(pod: Pod) -> None:
            harness.stopped.append((pod, [process_alive(pid) for pid in pod.pids]))

        rt = LocalRuntime(tmp_path / name, xds_host="127.0.0.1",
                          xds_port=xds.port if xds_port is None else xds_port,
                          on_change=on_change, images=images or ImageMap(),
                          drain_seconds=0.1, before_stop=before_stop)
        harness = Harness(rt)
        made.append(harness)
        return harness

    yield make
    for h in made:
        h.rt.stop()
    for h in made:
        assert h.rt.pods() == []
    leftover = [pid for pid in all_pids if process_alive(pid)]
    assert leftover == [], f"processes left running: {leftover}"


def get(pod: Pod, path: str = "/") -> httpx.Response:
    port = pod.inbound[0].app_port
    with httpx.Client(trust_env=False, timeout=5) as client:
        return client.get(f"http://{pod.ip}:{port}{path}")


def answers(pod: Pod) -> bool:
    """Whether the pod's app answers its readiness path (directly, not through the
    sidecar)."""
    try:
        return get(pod, "/healthz").status_code == 200
    except httpx.HTTPError:
        return False


# --- tests ----------------------------------------------------------------------------------


def test_pods_get_own_ips_env_and_sidecars(runtimes: Callable[..., Harness]) -> None:
    h = runtimes()
    h.rt.sync([("default", "web", deployment("web", replicas=2))])
    pods = h.ready("web", 2)

    assert len({p.ip for p in pods}) == 2
    for p in pods:
        assert p.ip.startswith("127.10.")
        assert p.name.startswith("web-") and len(p.name.split("-")[1]) == 10
        assert p.labels == {"app": "web", "version": "v1"}
        assert p.phase == "Running" and p.restarts == 0 and p.namespace == "default"
        assert p.node_id == f"sidecar~{p.ip}~{p.name}.default~default.svc.cluster.local"
        (port,) = p.inbound
        assert (port.container_port, port.name) == (8080, "http") and port.app_port != 8080
        body = get(p).json()
        assert body["pod"] == p.name and body["version"] == "v1"
        assert len(p.pids) == 1 and p.sidecar_pid and process_alive(p.sidecar_pid)
        assert Path(p.log_path).exists()
    assert h.changes >= 2
    status = h.rt.deployment_status("default", "web")
    assert status["replicas"] == status["readyReplicas"] == status["updatedReplicas"] == 2
    assert status["error"] is None

    # The environment the app sees.
    env = dict(
        line.split("=", 1)
        for line in Path(f"/proc/{pods[0].pids[0]}/environ").read_bytes().decode()
        .split("\0") if "=" in line
    )
    p = pods[0]
    assert env["POD_IP"] == p.ip and env["POD_NAME"] == p.name
    assert env["POD_NAMESPACE"] == "default"
    assert env["PORT"] == env["PORT_HTTP"] == str(p.inbound[0].app_port)
    assert env["HTTP_PROXY"] == env["http_proxy"] == f"http://{p.ip}:15001"
    assert env["HTTPS_PROXY"] == env["https_proxy"] == f"http://{p.ip}:15001"
    assert p.ip in env["NO_PROXY"].split(",")
    assert env["GREETING"] == f"hello {p.name}"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)

    # The sidecar's admin answers on its socket and its node id is the pod's.
    admin = wait_for(lambda: next((q.admin_socket for q in h.pods("web")
                                   if q.name == p.name and q.admin_socket), None))
    with AdminClient(admin) as client:
        info = client.server_info()
    assert info["node"]["id"] == p.node_id
    assert info["state"] == "LIVE"  # a ready pod's sidecar has its configuration


def test_a_pod_is_not_ready_until_its_sidecar_has_its_configuration(
        runtimes: Callable[..., Harness]) -> None:
    """The app answers its probe, but the pod stays out of the endpoints until its
    sidecar has taken its configuration and is LIVE, as in Kubernetes a pod is Ready only
    when every container is, and Istio's istio-proxy readiness probe (pilot-agent's
    /healthz/ready) passes only once Envoy's server state is LIVE: before that, its inbound
    listener does not exist and every connection sent to the pod would be refused."""
    port = free_port()  # no xDS server there yet: the sidecar stays PRE_INITIALIZING
    h = runtimes("late", xds_port=port)
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
    h.rt.sync([("default", "web", deployment("web", probe=probe))])
    pod = wait_for(lambda: next((p for p in h.pods("web") if p.admin_socket), None))
    wait_for(lambda: answers(pod), timeout=15)  # the app is up and answers its probe
    # the probe passed: what the pod waits for now is its sidecar
    pod = wait_for(lambda: next((p for p in h.pods("web") if p.message == SIDECAR_NOT_LIVE),
                                None), timeout=15)
    time.sleep(0.5)  # and it goes on waiting
    (pod,) = h.pods("web")
    assert not pod.ready and pod.phase == "Running"
    assert pod.message == SIDECAR_NOT_LIVE
    assert h.rt.deployment_status("default", "web")["readyReplicas"] == 0
    with AdminClient(pod.admin_socket) as client:
        assert client.server_info()["state"] == "PRE_INITIALIZING"

    server = empty_xds(port)  # the sidecar reconnects by itself (Envoy's back-off)
    try:
        (ready,) = h.ready("web", 1, timeout=30)
        assert ready.name == pod.name and ready.message == ""
    finally:
        server.stop()


def test_not_ready_until_the_probe_passes(runtimes: Callable[..., Harness]) -> None:
    h = runtimes()
    slow = ["sh", "-c", 'sleep 1; exec "$0" "$@"', *DEMO_APP]
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
    h.rt.sync([("default", "slow", deployment("slow", command=slow, probe=probe))])
    first = wait_for(lambda: h.pods("slow"))[0]
    seen_at = time.monotonic()
    assert not first.ready
    wait_for(lambda: h.pods("slow")[0].phase == "Running")
    assert not h.pods("slow")[0].ready
    (pod,) = h.ready("slow", 1)
    assert time.monotonic() - seen_at >= 0.9  # the app only listens after 1 s
    assert get(pod, "/healthz").status_code == 200


def test_scale_up_and_down_stops_pods_gracefully(runtimes: Callable[..., Harness]) -> None:
    h = runtimes()
    h.rt.sync([("default", "web", deployment("web", replicas=2))])
    two = h.ready("web", 2)
    h.rt.sync([("default", "web", deployment("web", replicas=3))])
    three = h.ready("web", 3)
    assert {p.name for p in two} < {p.name for p in three}
    assert len({p.ip for p in three}) == 3

    h.rt.sync([("default", "web", deployment("web", replicas=1))])
    (one,) = h.ready("web", 1)
    gone = [p for p in three if p.name != one.name]
    assert len(gone) == 2
    for p in gone:
        assert not any(process_alive(pid) for pid in p.pids)
        assert p.sidecar_pid is not None and not process_alive(p.sidecar_pid)
    # before_stop saw each pod Terminating and not ready while its app still ran.
    assert sorted(p.name for p, _ in h.stopped) == sorted(p.name for p in gone)
    for p, pids_alive in h.stopped:
        assert p.phase == "Terminating" and not p.ready and all(pids_alive)


def test_crashed_app_is_restarted(runtimes: Callable[..., Harness]) -> None:
    h = runtimes()
    h.rt.sync([("default", "web", deployment("web"))])
    (pod,) = h.ready("web", 1)
    (pid,) = pod.pids
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not h.pods("web")[0].ready, timeout=5)
    back = wait_for(lambda: next((p for p in h.pods("web")
                                  if p.ready and p.pids and p.pids != (pid,)), None),
                    timeout=10)
    assert back.name == pod.name and back.ip == pod.ip and back.restarts == 1
    assert get(back).json()["pod"] == pod.name

    # The sidecar is restarted too.
    assert back.sidecar_pid is not None
    os.kill(back.sidecar_pid, signal.SIGKILL)
    again = wait_for(lambda: next((p for p in h.pods("web") if p.sidecar_pid
                                   and p.sidecar_pid != back.sidecar_pid and p.ready), None),
                     timeout=10)
    assert again.restarts == 2


def test_rolling_update_replaces_pods_one_by_one(runtimes: Callable[..., Harness]) -> None:
    h = runtimes()
    h.rt.sync([("default", "web", deployment("web", replicas=2, version="v1"))])
    v1 = h.ready("web", 2)
    timeline: list[tuple[float, list[Pod]]] = []
    done = threading.Event()

    def record() -> None:
        while not done.is_set():
            timeline.append((time.monotonic(), h.pods("web")))
            time.sleep(0.01)

    recorder = threading.Thread(target=record)
    recorder.start()
    try:
        h.rt.sync([("default", "web", deployment("web", replicas=2, version="v2"))])
        v2 = h.ready("web", 2, timeout=30, version="v2")
    finally:
        done.set()
        recorder.join()

    assert all(p.labels["version"] == "v2" for p in v2)
    assert {p.name for p in v2}.isdisjoint(p.name for p in v1)
    v1_names = {p.name for p in v1}
    first_v1_stop = next(
        i for i, (_, pods) in enumerate(timeline)
        if any(p.name in v1_names and p.phase == "Terminating" for p in pods)
        or not v1_names <= {p.name for p in pods}
    )
    for _, pods in timeline:
        ready = [p for p in pods if p.ready]
        assert ready, "a moment with no ready pod"
        assert len(ready) >= 2, pods  # maxUnavailable 0
        live = [p for p in pods if p.phase != "Terminating"]
        assert len(live) <= 3  # maxSurge 1
    # By the time the first v1 pod began to stop, a v2 pod was already ready (and the
    # v1 pod was still ready in the sample before: it was never stopped while needed).
    at_stop = timeline[first_v1_stop][1]
    assert any(p.ready and p.labels["version"] == "v2" for p in at_stop)
    assert all(p.ready for p in timeline[first_v1_stop - 1][1] if p.name in v1_names)
    assert all(get(p).json()["version"] == "v2" for p in v2)


def test_recreate_stops_old_pods_first(runtimes: Callable[..., Harness]) -> None:
    h = runtimes()
    h.rt.sync([("default", "job", deployment("job", version="v1", strategy="Recreate"))])
    (old,) = h.ready("job", 1)
    h.rt.sync([("default", "job", deployment("job", version="v2", strategy="Recreate"))])
    overlap = []

    def settled() -> bool:
        pods = h.pods("job")
        if len(pods) > 1:
            overlap.append(pods)
        return len(pods) == 1 and pods[0].ready and pods[0].labels["version"] == "v2"

    wait_for(settled, timeout=15)
    assert overlap == []
    assert not any(process_alive(pid) for pid in old.pids)


def test_images_map_and_missing_command(runtimes: Callable[..., Harness], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "images.yaml").write_text("example.com/demo: [python, -m, meshpilot.demoapp]\n")
    extra = tmp_path / "more-images.yaml"
    extra.write_text("")
    monkeypatch.setenv("MESHPILOT_IMAGES", str(extra))
    images = ImageMap.default(state)
    h = runtimes(images=images)
    deps = [
        ("default", "broken", deployment("broken", image="nosuch/image:1.0")),
        ("default", "mapped", deployment("mapped", image="example.com/demo:2.0",
                                         args=["--version", "v3"])),
    ]
    h.rt.sync(deps)
    (mapped,) = h.ready("mapped", 1)
    assert get(mapped).json()["version"] == "v3"
    status = h.rt.deployment_status("default", "broken")
    assert status["error"] == (
        f"image nosuch/image:1.0 has no command: set `command` or map the image in "
        f"{state / 'images.yaml'} or {extra}"
    )
    assert status["replicas"] == 0 and h.pods("broken") == []
    assert h.rt.deployment_status("default", "mapped")["error"] is None

    # Mapping the image (in the $MESHPILOT_IMAGES file) fixes it without a restart.
    extra.write_text("nosuch/image: [python, -m, meshpilot.demoapp]\n")
    h.ready("broken", 1)
    assert h.rt.deployment_status("default", "broken")["error"] is None
    assert h.ready("mapped", 1)[0].name == mapped.name  # untouched throughout


def test_two_runtimes_never_share_an_ip(runtimes: Callable[..., Harness]) -> None:
    a, b = runtimes("a"), runtimes("b")
    a.rt.sync([("default", "web", deployment("web"))])
    b.rt.sync([("default", "web", deployment("web"))])
    (pa,), (pb,) = a.ready("web", 1), b.ready("web", 1)
    assert pa.ip != pb.ip


def test_ip_allocator_skips_held_and_busy_addresses(tmp_path: Path) -> None:
    one = IpAllocator("127.11.0.0/29", lock_dir=tmp_path)
    two = IpAllocator("127.11.0.0/29", lock_dir=tmp_path)
    first = one.allocate([8080])
    assert two.allocate([8080]) != first
    # Someone else listens on the next address's port 8080: skipped.
    third = one.allocate([8080])
    with socket.socket() as busy:
        nxt = f"127.11.0.{int(third.rsplit('.', 1)[1]) + 1}"
        busy.bind((nxt, 8080))
        busy.listen()
        got = one.allocate([8080])
        assert got not in (first, third, nxt)
    one.release(first)
    one.release_all()
    two.release_all()
    assert IpAllocator("127.11.0.0/29", lock_dir=tmp_path).allocate([8080]) == "127.11.0.1"


def test_stop_leaves_no_processes(runtimes: Callable[..., Harness]) -> None:
    h = runtimes()
    h.rt.sync([("default", "web", deployment("web", replicas=2)),
               ("other", "api", deployment("api"))])
    pods = h.ready("web", 2) + h.ready("api", 1)
    assert {p.namespace for p in pods} == {"default", "other"}
    pids = [pid for p in pods for pid in (*p.pids, p.sidecar_pid) if pid]
    assert len(pids) == 6 and all(process_alive(pid) for pid in pids)
    started = time.monotonic()
    h.rt.stop()
    assert time.monotonic() - started < 5  # in parallel, not one after another
    assert [pid for pid in pids if process_alive(pid)] == []
    assert h.rt.pods() == []


def test_command_that_cannot_run_fails_only_its_pod(runtimes: Callable[..., Harness]) -> None:
    h = runtimes()
    h.rt.sync([("default", "bad", deployment("bad", command=["/nonexistent/app"])),
               ("default", "web", deployment("web"))])
    bad = wait_for(lambda: next((p for p in h.pods("bad") if p.phase == "Failed"), None))
    assert "cannot start" in bad.message and "/nonexistent/app" in bad.message
    assert not bad.ready
    h.ready("web", 1)


def test_pods_get_service_variables_for_their_namespace_s_tcp_ports(
        runtimes: Callable[..., Harness], tmp_path: Path) -> None:
    """Kubernetes gives a pod ``{SVC}_SERVICE_HOST`` / ``_PORT`` / ``_PORT_{NAME}`` for each
    Service of its namespace that exists when it starts; here they point at the pod's own
    sidecar, which lists the ports in its node metadata and its pod record (adoption)."""
    echo = "tcp-echo.default.svc.cluster.local"
    targets = [TcpTarget("default", "tcp-echo", echo, 9000, "tcp"),
               TcpTarget("shop", "db", "db.shop.svc.cluster.local", 5432, "tcp")]
    h = runtimes()
    h.rt.sync([("default", "web", deployment("web"))], tcp_targets=targets)
    (p,) = h.ready("web", 1)
    env = dict(line.split("=", 1) for line in Path(f"/proc/{p.pids[0]}/environ")
               .read_bytes().decode().split("\0") if "=" in line)
    assert env["TCP_ECHO_SERVICE_HOST"] == p.ip
    assert env["TCP_ECHO_SERVICE_PORT"] == env["TCP_ECHO_SERVICE_PORT_TCP"] == str(FIRST_PORT)
    assert env["TCP_ECHO_PORT"] == f"tcp://{p.ip}:{FIRST_PORT}"
    assert not any(k.startswith("DB_") for k in env)  # another namespace's Service
    (listed,) = p.tcp_outbound
    assert (listed.host, listed.port, listed.local_port) == (echo, 9000, FIRST_PORT)
    assert p.proxy_node().tcp_outbound == p.tcp_outbound
    record = json.loads((tmp_path / "rt" / "pods" / f"{p.name}.json").read_text())
    assert record["tcp_outbound"] == [{"host": echo, "port": 9000, "local_port": FIRST_PORT}]


def test_a_sidecar_restarts_with_a_new_bootstrap_and_its_apps_run_on(
        runtimes: Callable[..., Harness], tmp_path: Path) -> None:
    """A pod whose sidecar's xDS credential was issued again, different, has its sidecar
    restarted with the new bootstrap (as a pod whose bootstrap changed is restarted
    rather than adopted), while its app goes on in the same process; the pod is ready
    again once the new sidecar is LIVE."""
    h = runtimes()
    h.rt.sync([("default", "web", deployment("web"))])
    (pod,) = h.ready("web", 1)
    doc = json.loads((tmp_path / "rt" / "sidecars" / f"{pod.name}.json").read_text())
    doc["node"].setdefault("metadata", {})["CREDENTIAL_MARK"] = "second"
    assert h.rt.refresh_sidecar(pod.node_id, doc)
    assert not h.rt.refresh_sidecar("sidecar~no~such.pod", doc)
    again = wait_for(lambda: next((p for p in h.pods("web") if p.ready and p.sidecar_pid
                                   and p.sidecar_pid != pod.sidecar_pid), None), timeout=20)
    assert again.pids == pod.pids  # the app was not restarted
    with AdminClient(again.admin_socket) as client:
        assert client.server_info()["node"]["metadata"]["CREDENTIAL_MARK"] == "second"
