"""API routes for the running mesh: pods, proxies and what each proxy actually holds.

``/api/v1/namespaces/{ns}/pods`` lists the runtime's pods Kubernetes-style (``.../{name}``
one of them, ``.../{name}/security`` what its sidecar enforces and why);
``.../{name}/log`` its logs as ``kubectl logs`` reads them (``?container=istio-proxy``: the
sidecar's access log and Envoy's output; :mod:`meshpilot.server.pod_logs`);
``/apis/meshpilot.io/v1/proxies`` is ``proxy-status`` (per proxy, per xDS type: the
version sent, the version ACKed, or the NACK); ``.../proxies/{name}/config/{type}`` reads
the proxy's own admin ``/config_dump``, so the answer is what Envoy holds, not what we
meant to send (``secret``: its certificate and roots, parsed; never a key).

A proxy's admin is a Unix socket only this user can open: these authenticated routes are
how a user reads it from elsewhere. A pod's status names its sidecar's socket
(``sidecarAdminSocket``) for whoever runs meshpilot and wants the rest of the admin API
(``curl --unix-socket PATH http://x/stats``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import MappingProxyType
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from meshpilot.api.placement import LOCAL_NODE
from meshpilot.proxy.admin import AdminClient
from meshpilot.runtime import Pod
from meshpilot.server import kube_pods, pod_logs
from meshpilot.server.controlplane import MeshControlPlane
from meshpilot.server.pod_logs import LogSource
from meshpilot.server.pod_security import pod_security
from meshpilot.server.proxy_secrets import ACTIVE, WARMING, secret_items, without_keys

_ADMIN = "type.googleapis.com/envoy.admin.v3."
CONFIG_TYPES = MappingProxyType({
    "clusters": ("dynamic_active_clusters", _ADMIN + "ClustersConfigDump"),
    "listeners": ("dynamic_listeners", _ADMIN + "ListenersConfigDump"),
    "routes": ("dynamic_route_configs", _ADMIN + "RoutesConfigDump"),
    "endpoints": ("", _ADMIN + "EndpointsConfigDump"),
})


def _items(dump: dict[str, Any], kind: str) -> list[Any]:
    """The ``kind`` entries of a whole ``/config_dump``."""
    field, type_url = CONFIG_TYPES[kind]
    for config in dump.get("configs", []):
        if config.get("@type") == type_url:
            if kind == "endpoints":
                return [*config.get("static_endpoint_configs", []),
                        *config.get("dynamic_endpoint_configs", [])]
            return list(config.get(field, []))
    return []


def _secrets(socket_path: str) -> list[dict[str, Any]]:
    """The proxy's SDS secrets, certificates parsed, keys never read (blocking)."""
    with AdminClient(socket_path) as admin:
        return secret_items(admin.config_dump(ACTIVE), admin.config_dump(WARMING))


def _config_dump(socket_path: str, include_eds: bool) -> dict[str, Any]:
    """The proxy's whole ``/config_dump`` (blocking; a client of its own: this runs in a
    worker thread, beside the proxy's other users)."""
    with AdminClient(socket_path) as admin:
        return admin.config_dump(include_eds=include_eds)


def _error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"kind": "Status", "status": "Failure", "code": code,
                         "message": message}, status_code=code)


def _log_response(request: Request, sources: list[LogSource],
                  alive: Callable[[], bool]) -> Response:
    """Plain text, as the Kubernetes API answers a pod log request; streamed while the
    client follows."""
    try:
        tail = pod_logs.parse_tail(request.query_params.get("tailLines"))
    except ValueError:
        return _error(400, "tailLines must be a whole number of lines, 0 or more")
    if request.query_params.get("follow") in ("true", "1"):
        return StreamingResponse(pod_logs.follow(sources, tail, alive),
                                 media_type="text/plain; charset=utf-8")
    lines = pod_logs.read_logs(sources, tail)
    return PlainTextResponse("".join(line + "\n" for line in lines))


def proxy_statuses(mesh: MeshControlPlane) -> list[dict[str, Any]]:
    """Every proxy's xDS status: per type the version sent, the version ACKed, the NACK
    (``proxy-status``, and the dashboard's Proxies table)."""
    out = []
    latest = mesh.snapshot.version
    for status in mesh.xds.status():
        node = status.node
        refusal = status.refusal
        out.append({
            "id": node.id, "kind": node.kind, "namespace": node.namespace,
            "name": node.name or node.workload, "workload": node.workload,
            "connected": status.connected, "api": status.api,
            "refused": {"version": refusal.version, "problems": list(refusal.problems)}
            if refusal is not None else None,
            "meshVersion": status.mesh_version, "latestVersion": latest,
            "types": {
                url.rsplit(".", 1)[-1]: {
                    "sent": t.sent_version, "acked": t.acked_version, "nack": t.nack,
                    "resources": t.resources,
                }
                for url, t in status.types.items()
            },
        })
    return out


class MeshAPI:
    def __init__(self, mesh: MeshControlPlane) -> None:
        self.mesh = mesh

    def _pods(self) -> list[Any]:
        return self.mesh.runtime.pods() if self.mesh.runtime is not None else []

    @staticmethod
    def _pod_json(pod: Any) -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": pod.namespace,
                         "labels": dict(pod.labels),
                         "ownerReferences": [{"kind": "Deployment", "name": pod.deployment}]},
            # the app's container and its sidecar, by the names kubectl logs -c takes
            "spec": {"serviceAccountName": pod.service_account,
                     "nodeName": pod.node or LOCAL_NODE,
                     "containers": [{"name": "app"}, {"name": pod_logs.PROXY_CONTAINER}]},
            "status": {
                "phase": pod.phase, "podIP": pod.ip, "ready": pod.ready,
                "restartCount": pod.restarts, "message": pod.message,
                "reason": pod.reason or None,
                "ports": [asdict(p) for p in pod.inbound],
                "sidecarAdminSocket": pod.admin_socket or None,
                "startedAt": pod.started_at,
            },
        }

    async def pods(self, request: Request) -> Response:
        ns = request.path_params.get("namespace")
        def look() -> list[dict[str, Any]]:
            return [self._pod_json(p) for p in self._pods() if ns is None or p.namespace == ns]

        return kube_pods.pod_list(request, look(), look)

    def _find_pod(self, namespace: str, name: str) -> Pod | Response:
        """The pod ``namespace/name``, or the 404 response naming the pods there (and the
        namespace a pod of that name is in, if it is in another)."""
        pods = self._pods()
        found = next((p for p in pods if p.namespace == namespace and p.name == name), None)
        if found is not None:
            return found
        here = sorted(p.name for p in pods if p.namespace == namespace)
        elsewhere = sorted(p.namespace for p in pods if p.name == name)
        hint = f" (it is in namespace {elsewhere[0]}: use -n {elsewhere[0]})" if elsewhere else ""
        return _error(404, f"no pod {name!r} in namespace {namespace}{hint}; pods there: "
                           f"{', '.join(here) or 'none'}")

    async def pod(self, request: Request) -> Response:
        found = self._find_pod(request.path_params["namespace"], request.path_params["name"])
        return found if isinstance(found, Response) else kube_pods.pod(
            request, self._pod_json(found))

    async def pod_security(self, request: Request) -> Response:
        """What the pod's sidecar enforces and why, from the current snapshot (the one
        the proxies are being sent): ``meshpilot describe pod``."""
        found = self._find_pod(request.path_params["namespace"], request.path_params["name"])
        if isinstance(found, Response):
            return found
        body = pod_security(self.mesh.snapshot, found.proxy_node())
        return JSONResponse({"apiVersion": "meshpilot.io/v1", "kind": "PodSecurity",
                             "pod": self._pod_json(found), **body})

    async def pod_log(self, request: Request) -> Response:
        """Kubernetes' pod log endpoint: ``container`` (``istio-proxy`` for the sidecar,
        else the app), ``tailLines``, ``follow``."""
        ns, name = request.path_params["namespace"], request.path_params["name"]
        found = self._find_pod(ns, name)
        if isinstance(found, Response):
            return found
        if found.node:
            return _error(409, f"pod {name} runs on node {found.node}: its logs are on that "
                               f"host, in the agent's --state-dir (pods/{name}.log)")
        if request.query_params.get("container") == pod_logs.PROXY_CONTAINER:
            sources = pod_logs.proxy_sources(found.sidecar_log_path, found.access_log_path)
        else:
            sources = [LogSource((Path(found.log_path),))] if found.log_path else []
        return _log_response(request, sources,
                             lambda: not isinstance(self._find_pod(ns, name), Response))

    async def proxy_log(self, request: Request) -> Response:
        """A built-in proxy's logs (``mesh-proxy``, ``ingressgateway``), as
        :meth:`pod_log` gives a sidecar's."""
        name = request.path_params["name"]
        proxy = self.mesh.proxies.get(name)
        if proxy is None:
            return _error(404, f"no built-in proxy {name!r}; known: "
                               f"{', '.join(sorted(self.mesh.proxies)) or 'none'}")
        access = str(proxy.access_log.path) if proxy.access_log is not None else ""
        sources = pod_logs.proxy_sources(str(proxy.log_path), access)
        return _log_response(request, sources, lambda: name in self.mesh.proxies)

    async def proxies(self, request: Request) -> Response:
        return JSONResponse({"proxies": proxy_statuses(self.mesh)})

    def _admin_for(self, name: str) -> str | Response:
        """The admin socket of the proxy ``name`` (a built-in proxy by its key or the name
        proxy-status shows, or a pod), or the error response saying why there is none."""
        proxy = self.mesh.proxies.get(name)
        if proxy is not None and proxy.running:
            return str(proxy.admin_socket)
        for proxy in self.mesh.proxies.values():  # the name proxy-status shows
            meta = proxy.bootstrap.get("node", {}).get("metadata", {})
            if proxy.running and name in (meta.get("NAME"), meta.get("WORKLOAD_NAME")):
                return str(proxy.admin_socket)
        pods = self._pods()
        for pod in pods:
            if pod.name == name and pod.admin_socket:
                return pod.admin_socket
            if pod.name == name and pod.node:
                return _error(409, f"pod {name} runs on node {pod.node}: its sidecar's admin "
                                   "is on that host")
            if pod.name == name:
                return _error(409, f"pod {name} is {pod.phase}: its sidecar is not running"
                                   f"{f' ({pod.message})' if pod.message else ''}; running: "
                                   f"{', '.join(self._running_proxies()) or 'none'}")
        return _error(404, f"no proxy named {name!r}; known: "
                           f"{', '.join(self._running_proxies()) or 'none'}")

    def _running_proxies(self) -> list[str]:
        """The names ``proxy-config`` takes: the built-in proxies and every pod whose
        sidecar answers."""
        names = [name for name, proxy in self.mesh.proxies.items() if proxy.running]
        names += [p.name for p in self._pods() if p.admin_socket]
        return sorted(names)

    async def proxy_config(self, request: Request) -> Response:
        name = request.path_params["name"]
        kind = request.path_params["type"]
        if kind not in CONFIG_TYPES and kind not in ("secret", "all"):
            return _error(400, f"unknown config type {kind!r}; use one of: "
                          f"{', '.join(CONFIG_TYPES)}, secret, all")
        socket_path = self._admin_for(name)
        if isinstance(socket_path, Response):
            return socket_path
        try:
            if kind == "secret":
                return JSONResponse({"proxy": name, "type": kind,
                                     "items": await asyncio.to_thread(_secrets, socket_path)})
            dump = await asyncio.to_thread(_config_dump, socket_path,
                                           kind in ("endpoints", "all"))
        except Exception as exc:  # the proxy's admin did not answer
            return _error(503, f"proxy {name} did not answer its admin endpoint: {exc}")
        if kind == "all":
            return JSONResponse(without_keys(dump))
        return JSONResponse({"proxy": name, "type": kind, "items": _items(dump, kind)})

    async def readiness(self, request: Request) -> Response:
        """Is the mesh converged: every stored change in the mesh, every Deployment at its
        replicas, every proxy on the latest mesh version? ``meshpilot up DIR`` waits on
        this. Right after a write the latest mesh version does not hold it yet (the
        rebuild follows the store's watch), so that is not ready either."""
        deployments = []
        runtime = self.mesh.runtime
        for ns, name, dep in self.mesh.deployments(from_store=True):  # as just applied
            status = runtime.deployment_status(ns, name) if runtime is not None else {}
            deployments.append({**status, "namespace": ns, "name": name,
                                "replicas": dep.spec.replicas})
        latest = self.mesh.snapshot.version
        pending = self.mesh.store.revision() > self.mesh.built_from_revision
        proxies = [s for s in self.mesh.xds.status() if s.connected]
        synced = [s for s in proxies if s.mesh_version >= latest]
        ready = all(
            d.get("readyReplicas", 0) >= (d["replicas"] or 0) and not d.get("error")
            for d in deployments
        )
        return JSONResponse({
            "deployments": deployments, "meshVersion": latest,
            "proxies": {"connected": len(proxies), "synced": len(synced)},
            "changesPending": pending,
            "ready": ready and not pending and len(synced) == len(proxies),
            "time": time.time(),
        })

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/pods", self.pods),
            Route("/api/v1/namespaces/{namespace}/pods", self.pods),
            Route("/api/v1/namespaces/{namespace}/pods/{name}", self.pod),
            Route("/api/v1/namespaces/{namespace}/pods/{name}/security", self.pod_security),
            Route("/api/v1/namespaces/{namespace}/pods/{name}/log", self.pod_log),
            Route("/apis/meshpilot.io/v1/proxies", self.proxies),
            Route("/apis/meshpilot.io/v1/proxies/{name}/log", self.proxy_log),
            Route("/apis/meshpilot.io/v1/proxies/{name}/config/{type}", self.proxy_config),
            Route("/apis/meshpilot.io/v1/readiness", self.readiness),
        ]
