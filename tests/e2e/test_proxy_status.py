"""What the control plane reports about its proxies, what they actually hold, how a NACK
shows up, and what a crash of the control plane does to traffic."""

from __future__ import annotations

from typing import Any

import httpx

from meshpilot.server.leftovers import find_leftovers
from tests.conftest import process_alive, run_cli, wait_for
from tests.e2e import myapp
from tests.e2e.mesh import URL, Mesh
from tests.e2e.scenario import Given

V1_CLUSTER = "outbound|8080|v1|myapp.default.svc.cluster.local"
PROXIES = {"mesh-proxy", "istio-ingressgateway"}  # beside the pods' sidecars


def given_myapp(mesh: Mesh, given: Given, replicas: int = 2) -> list[dict[str, Any]]:
    """Given myapp v1 (``replicas`` pods) and v2 (one), subsets, and the ingress gateway
    routing every host to v1; the pods."""
    given.applied(myapp.version("v1", replicas=replicas), myapp.version("v2"), myapp.service(),
                  myapp.subsets(), *myapp.ingress("v1"))
    pods = mesh.pods()
    assert len(pods) == replicas + 1
    return pods


def test_every_proxy_is_connected_and_synced(mesh: Mesh, given: Given) -> None:
    pods = given_myapp(mesh, given)
    names = {p["metadata"]["name"] for p in pods}
    proxies = mesh.wait_synced(names | PROXIES)
    kinds = {p["name"]: p["kind"] for p in proxies}
    assert kinds["mesh-proxy"] == "client"
    assert kinds["istio-ingressgateway"] == "gateway"
    assert {kinds[n] for n in names} == {"sidecar"}
    assert len({p["meshVersion"] for p in proxies}) == 1

    v1_ips = {
        f"{p['status']['podIP']}:8080" for p in pods if p["metadata"]["labels"]["version"] == "v1"
    }
    for pod in sorted(names):
        clusters = {c["cluster"]["name"] for c in mesh.proxy_config(pod, "clusters")}
        assert V1_CLUSTER in clusters, clusters
        assert "outbound|8080|v2|myapp.default.svc.cluster.local" in clusters
        assert "inbound|8080||" in clusters
        listeners = {item["name"] for item in mesh.proxy_config(pod, "listeners")}
        assert {"inbound_8080"} <= listeners and len(listeners) >= 2, listeners
        routes = mesh.proxy_config(pod, "routes")
        assert routes and any(
            vh["domains"] for r in routes for vh in r["route_config"].get("virtual_hosts", [])
        )
        assert set(mesh.endpoint_addresses(pod, V1_CLUSTER)) == v1_ips
    gateway_routes = mesh.proxy_config("istio-ingressgateway", "routes")
    assert [r["route_config"]["name"] for r in gateway_routes] == ["http.80"]
    assert mesh.from_ingress().headers["x-version"] == "v1"


def test_cli_shows_proxies_config_and_pods(mesh: Mesh, given: Given) -> None:
    pods = given_myapp(mesh, given, replicas=1)
    names = {p["metadata"]["name"] for p in pods}
    mesh.wait_synced(names | PROXIES)
    state = mesh.cp.state_dir

    status = run_cli("proxy-status", state_dir=state)
    assert status.returncode == 0, status.stderr
    rows = {
        line.split()[0]: line.split() for line in status.stdout.splitlines()[1:] if line.strip()
    }
    assert set(rows) == names | PROXIES, status.stdout
    for name, row in rows.items():
        assert row.count("SYNCED") >= 4, (name, status.stdout)
        assert "NACK" not in row and "STALE" not in row, (name, status.stdout)
        version, latest = row[-1].split("/")
        assert version == latest, status.stdout

    pod = sorted(n for n in names if n.startswith("myapp-v1-"))[0]
    config = run_cli("proxy-config", "clusters", pod, state_dir=state)
    assert config.returncode == 0, config.stderr
    lines = [line.split() for line in config.stdout.splitlines()]
    assert ["myapp.default.svc.cluster.local", "8080", "v1", "OUTBOUND", "EDS"] in lines
    assert ["myapp.default.svc.cluster.local", "8080", "-", "OUTBOUND", "EDS"] in lines
    assert ["8080", "-", "INBOUND", "STATIC"] in lines, config.stdout

    got = run_cli("get", "pods", state_dir=state)
    assert got.returncode == 0, got.stderr
    pod_rows = {
        line.split()[0]: line.split() for line in got.stdout.splitlines()[1:] if line.strip()
    }
    assert set(pod_rows) == names, got.stdout
    for p in pods:
        row = pod_rows[p["metadata"]["name"]]
        assert row[1:4] == ["1/1", "Running", "0"], got.stdout
        assert row[4] == p["status"]["podIP"]
        assert row[5] == p["metadata"]["name"].rsplit("-", 2)[0]

    unknown = run_cli("proxy-config", "clusters", "no-such-pod", state_dir=state)
    assert unknown.returncode != 0
    assert "no-such-pod" in unknown.stdout + unknown.stderr


def test_nacked_config_is_reported_and_the_last_good_config_keeps_serving(
    mesh: Mesh, given: Given
) -> None:
    pods = given_myapp(mesh, given, replicas=1)
    names = {p["metadata"]["name"] for p in pods} | PROXIES
    pod = next(p for p in pods if p["metadata"]["name"].startswith("myapp-v1-"))
    # meshpilot accepts any table size; Envoy requires a prime one and refuses the clusters.
    policy = """
        loadBalancer:
          consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 1000}}
        """
    mesh.apply(myapp.subsets(traffic_policy=policy))

    def nacked() -> list[dict[str, Any]] | None:
        proxies = mesh.proxies()
        if {p["name"] for p in proxies} == names and all(
            "maglev" in (p["types"]["Cluster"]["nack"] or "") for p in proxies
        ):
            return proxies
        return None

    proxies = wait_for(nacked, 30, interval=0.1, message="every proxy NACKs the clusters")
    for p in proxies:
        assert p["meshVersion"] < p["latestVersion"], p
        assert p["types"]["Cluster"]["acked"] != p["types"]["Cluster"]["sent"]
    status = run_cli("proxy-status", state_dir=mesh.cp.state_dir)
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("NACK") == len(names), status.stdout

    # The proxies keep the last good clusters and keep serving.
    for name in (pod["metadata"]["name"], "mesh-proxy"):
        assert mesh.clusters(name)[V1_CLUSTER].get("lb_policy") != "MAGLEV"
    counts = mesh.versions(URL, 20)
    assert sum(counts.get(v, 0) for v in ("v1", "v2")) == 20, counts
    assert mesh.from_ingress().status_code == 200
    ip = pod["status"]["podIP"]
    with httpx.Client(proxy=f"http://{ip}:15001", trust_env=False) as client:
        assert client.get(URL).status_code == 200

    # Fixed: a prime table size is accepted and the NACK is gone.
    mesh.apply(myapp.subsets(traffic_policy=policy.replace("tableSize: 1000", "tableSize: 1021")))
    mesh.converge()
    mesh.wait_synced(names)
    assert mesh.clusters()[V1_CLUSTER]["lb_policy"] == "MAGLEV"
    assert mesh.versions(URL, 10).keys() <= {"v1", "v2"}


def test_sidecars_survive_a_control_plane_crash_and_restart_adopts_them(
    mesh: Mesh, given: Given
) -> None:
    pods = given_myapp(mesh, given, replicas=1)
    old_names = {p["metadata"]["name"] for p in pods}
    v1 = next(p for p in pods if p["metadata"]["name"].startswith("myapp-v1-"))
    ip = v1["status"]["podIP"]

    mesh.cp.kill()
    leftovers = find_leftovers(mesh.cp.state_dir / "run")
    assert leftovers, "the pods died with the control plane"

    # The pod's sidecar still serves its last config: inbound straight to the app...
    with httpx.Client(trust_env=False, timeout=10) as client:
        r = client.get(f"http://{ip}:8080/")
        assert r.status_code == 200 and r.headers["x-pod"] == v1["metadata"]["name"]
    # ...and outbound through its HTTP proxy listener, routed to other pods.
    with httpx.Client(proxy=f"http://{ip}:15001", trust_env=False, timeout=10) as client:
        seen = {client.get(URL).headers.get("x-version") for _ in range(20)}
        assert seen == {"v1", "v2"}, seen

    # The restarted control plane adopts them: the same processes, none stopped, none
    # started twice, the same pods at the same addresses.
    mesh.cp.start()
    mesh.converge()
    assert sorted(find_leftovers(mesh.cp.state_dir / "run")) == sorted(leftovers)
    assert all(process_alive(pid) for pid in leftovers)
    new_pods = mesh.pods()
    assert {p["metadata"]["name"]: p["status"]["podIP"] for p in new_pods} == {
        p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    assert all(p["status"]["restartCount"] == 0 for p in new_pods)
    mesh.wait_synced(old_names | PROXIES)
    with mesh.client() as client:
        answered = {client.get(URL).headers.get("x-pod") for _ in range(30)}
    assert answered == old_names, answered
    assert mesh.from_ingress().headers["x-version"] == "v1"
