"""A real mesh as the end-to-end tests drive it: control plane, Envoy proxies, pods.

``Mesh`` wraps one running control plane (with its mesh proxy, ingress gateway and local
runtime). ``apply`` goes through the API like ``meshpilot apply``; ``converge`` waits
until every Deployment is ready and every proxy has ACKed the latest mesh version;
``http`` is a client whose proxy is the mesh proxy, so ``mesh.http.get(URL)`` is a
request from inside the mesh. The rest reads what the mesh holds: pods, proxies, the
config a proxy holds, its admin API, the embedded telemetry.
"""

from __future__ import annotations

import textwrap
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from meshpilot.proxy.admin import AdminClient
from meshpilot.proxy.admin_socket import admin_socket_path
from tests.builders import to_yaml
from tests.conftest import ControlPlane, read_endpoints, wait_for

URL = "http://myapp:8080/"
API = "/apis/meshpilot.io/v1"
# What a proxy must have ACKed to be in sync (the xDS types every proxy subscribes to).
XDS_TYPES = {"Cluster", "ClusterLoadAssignment", "Listener", "RouteConfiguration"}


def pod_of(response: httpx.Response) -> str:
    """The pod that answered (``status:NNN`` when no demo app answered)."""
    return response.headers.get("x-pod") or f"status:{response.status_code}"


def version_of(response: httpx.Response) -> str:
    """The version that answered (``status:NNN`` when no demo app answered)."""
    return response.headers.get("x-version") or f"status:{response.status_code}"


def admin_at(socket_path: str) -> AdminClient:
    """An Envoy admin client for the admin socket ``socket_path`` (a pod's status names
    its sidecar's: ``sidecarAdminSocket``)."""
    return AdminClient(socket_path)


class Mesh:
    """One running control plane and the data plane it programs."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.endpoints = self.cp_endpoints()
        self.mesh_proxy: str = self.endpoints["mesh_proxy"]
        self.ingress: str = self.endpoints["ingress"]
        self.http = httpx.Client(proxy=self.mesh_proxy, trust_env=False, timeout=15.0)

    @property
    def api(self) -> httpx.Client:
        assert self.cp.client is not None
        return self.cp.client

    def cp_endpoints(self) -> dict[str, Any]:
        """What the running control plane wrote to ``endpoints.json``."""
        endpoints = read_endpoints(self.cp.state_dir)
        assert endpoints is not None, "the control plane wrote no endpoints.json"
        return endpoints

    # --- configuration -----------------------------------------------------------------
    def apply(self, *docs: str | Mapping[str, Any], expect: int = 200) -> dict[str, Any]:
        """Apply bodies or YAML texts as one file, like ``meshpilot apply -f``."""
        text = "\n---\n".join(
            textwrap.dedent(d) if isinstance(d, str) else to_yaml(d) for d in docs)
        r = self.api.post(f"{API}/apply", json={"sources": [{"file": "test.yaml", "text": text}]})
        assert r.status_code == expect, r.text
        return r.json()

    def delete(self, kind: str, name: str, namespace: str = "default", group: str = "") -> None:
        r = self.api.post(f"{API}/delete", json={"keys": [
            {"group": group, "kind": kind, "namespace": namespace, "name": name}]})
        assert r.status_code == 200, r.text

    def readiness(self) -> dict[str, Any]:
        r = self.api.get(f"{API}/readiness")
        assert r.status_code == 200, r.text
        return r.json()

    def converge(self, timeout: float = 60.0) -> dict[str, Any]:
        """Every Deployment ready, every proxy ACKed the latest mesh version."""
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.readiness()
            if state["ready"]:
                # settle: a second look after the last ACK, so pods that became ready
                # in between are included
                time.sleep(0.1)
                state = self.readiness()
                if state["ready"]:
                    return state
            time.sleep(0.1)
        raise AssertionError(f"mesh did not converge in {timeout}s: {state}\n{self.cp.log()}")

    # --- workloads -----------------------------------------------------------------------
    def pods(self, namespace: str = "default") -> list[dict[str, Any]]:
        return self.api.get(f"/api/v1/namespaces/{namespace}/pods").json()["items"]

    def pods_of(self, deployment: str, *, terminating: bool = True) -> list[dict[str, Any]]:
        """The pods of ``deployment``; ``terminating=False`` leaves out those stopping."""
        return [p for p in self.pods()
                if p["metadata"]["ownerReferences"][0]["name"] == deployment
                and (terminating or p["status"]["phase"] != "Terminating")]

    # --- proxies -------------------------------------------------------------------------
    def proxies(self) -> list[dict[str, Any]]:
        return self.api.get(f"{API}/proxies").json()["proxies"]

    def proxy_config(self, name: str, kind: str) -> list[dict[str, Any]]:
        r = self.api.get(f"{API}/proxies/{name}/config/{kind}")
        assert r.status_code == 200, r.text
        return r.json()["items"]

    def clusters(self, proxy: str = "mesh-proxy") -> dict[str, dict[str, Any]]:
        """The clusters ``proxy`` holds, by name."""
        return {c["cluster"]["name"]: c["cluster"] for c in self.proxy_config(proxy, "clusters")}

    def endpoint_addresses(self, proxy: str, cluster: str) -> list[str]:
        """``ip:port`` of every endpoint ``proxy`` holds for ``cluster``, in its order."""
        return [
            f"{sock['address']}:{sock['port_value']}"
            for item in self.proxy_config(proxy, "endpoints")
            if (item.get("endpoint_config") or {}).get("cluster_name") == cluster
            for group in item["endpoint_config"].get("endpoints", [])
            for ep in group.get("lb_endpoints", [])
            for sock in [ep["endpoint"]["address"]["socket_address"]]
        ]

    def synced(self, expected: set[str]) -> list[dict[str, Any]] | None:
        """The proxies when exactly ``expected`` are connected, each with every type ACKed
        at the latest version and no NACK; else None."""
        proxies = self.proxies()
        if {p["name"] for p in proxies} != expected:
            return None
        for p in proxies:
            if not p["connected"] or p["meshVersion"] != p["latestVersion"]:
                return None
            if not set(p["types"]) >= XDS_TYPES:
                return None
            for t in p["types"].values():
                if t["nack"] is not None or t["acked"] != t["sent"]:
                    return None
        return proxies

    def wait_synced(self, expected: set[str], timeout: float = 30.0) -> list[dict[str, Any]]:
        try:
            return wait_for(lambda: self.synced(expected), timeout, interval=0.1,
                            message="every proxy connected and SYNCED at the latest version")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nexpected {sorted(expected)}\n{self.proxies()}") from None

    def proxy_admin(self) -> AdminClient:
        """The admin API of the mesh proxy (its socket, in the run directory's ``admin``)."""
        path = admin_socket_path(Path(self.cp.state_dir) / "run", "mesh-proxy")
        wait_for(path.exists, timeout=10, message=f"the mesh proxy's admin socket {path}")
        return admin_at(str(path))

    def sidecar_admin(self, deployment: str) -> AdminClient:
        """The admin API of the sidecar of the (single) pod of ``deployment``."""
        pods = self.pods_of(deployment)
        assert len(pods) == 1, pods
        return admin_at(pods[0]["status"]["sidecarAdminSocket"])

    # --- requests ------------------------------------------------------------------------
    def versions(self, url: str, n: int, **request: Any) -> Counter[str]:
        """Send ``n`` requests through the mesh proxy; count the answers by version."""
        return Counter(version_of(self.http.get(url, **request)) for _ in range(n))

    def by_pod(self, url: str, n: int, **request: Any) -> Counter[str]:
        """Send ``n`` requests through the mesh proxy; count the answers by pod."""
        return Counter(pod_of(self.http.get(url, **request)) for _ in range(n))

    def client(self, **options: Any) -> httpx.Client:
        """A new client through the mesh proxy (one per thread or per source address);
        with a ``transport``, a plain client on it."""
        if "transport" in options:
            return httpx.Client(trust_env=False, timeout=15.0, **options)
        return httpx.Client(proxy=self.mesh_proxy, trust_env=False, timeout=15.0, **options)

    def from_ingress(self, path: str = "/", host: str | None = None) -> httpx.Response:
        """A request from outside the mesh to the ingress gateway (with ``Host: host``)."""
        headers = {"Host": host} if host else {}
        with httpx.Client(trust_env=False, timeout=15.0) as client:
            return client.get(self.ingress + path, headers=headers)

    def telemetry(self, **params: str) -> dict[str, Any]:
        """The embedded telemetry query (``namespace``, ``workload``, ``window``)."""
        r = self.api.get(f"{API}/telemetry/query", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def close(self) -> None:
        self.http.close()
