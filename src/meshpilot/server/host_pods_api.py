"""API routes through which a joined host's agent runs the pods placed on its node.

Both are authenticated by the host's credential from its join (``hostToken``, bound to
its WorkloadEntry), like its reports, and so carry no bearer token:

- ``POST /apis/meshpilot.io/v1/hosts/pods`` ``{"namespace", "entry", "hostToken", "node",
  "pods": [...], "deployments": {"NS/NAME": status}, "stats": {...}}``: the host's node
  name, its pods, counts and sidecar counters; answered with the Deployments it is to run
  (with the ConfigMaps and Secrets they read), the Services' TCP ports (``tcpTargets``),
  and the pod sidecars whose certificates it is to issue again (``reissue``); refused
  with 503 by a replica that does not place the Deployments now (it does not lead);
- ``POST /apis/meshpilot.io/v1/hosts/pod-credential`` ``{"namespace", "entry",
  "hostToken", "node", "podNamespace", "deployment", "nodeId", "csr", "keyFile"}``: one
  pod sidecar's certificate and xDS token.

See :mod:`meshpilot.server.host_pods` for what a host may claim.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshpilot.api.identity import ObjectKey
from meshpilot.server.host_pods import HostPods, HostPodsRefused
from meshpilot.server.host_stats import reported_stats

API = "/apis/meshpilot.io/v1/hosts"
PATHS = frozenset({f"{API}/pods", f"{API}/pod-credential"})
_HOST = ("namespace", "entry", "hostToken", "node")
_CREDENTIAL = frozenset({*_HOST, "podNamespace", "deployment", "nodeId", "csr", "keyFile"})

Member = Callable[[str, str, str], ObjectKey | None]


def _failure(status: int, message: str, code: str = "") -> JSONResponse:
    body: dict[str, Any] = {"kind": "Status", "status": "Failure", "code": status,
                            "message": message}
    if code:
        body["diagnostics"] = [{"code": code, "severity": "error", "message": message}]
    return JSONResponse(body, status_code=status)


async def _body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in _HOST):
        return None
    return body


def _sidecar_stats(raw: Any) -> dict[str, tuple[int, bytes]] | None:
    """The pods' sidecar counters by node id; None if any is not what agents send."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        return None
    out = {}
    for nid, item in raw.items():
        decoded = reported_stats(item) if isinstance(item, dict) else None
        if decoded is None:
            return None
        out[str(nid)] = decoded
    return out


class HostPodsAPI:
    def __init__(self, pods: HostPods, member: Member,
                 placing: Callable[[], bool] = lambda: True) -> None:
        self.pods = pods
        self.member = member
        self.placing = placing
        """Whether this replica places the Deployments now (it leads and has placed since
        it took the lead). A sync it cannot answer is refused with 503, so the host keeps
        running what it runs and asks again, rather than being told to run nothing while
        the lead passes from one replica to another."""

    def _member(self, body: dict[str, Any]) -> ObjectKey | None:
        return self.member(body["namespace"], body["entry"], body["hostToken"])

    async def sync(self, request: Request) -> Response:
        body = await _body(request)
        if body is None or not isinstance(body.get("pods", []), list) or \
                not isinstance(body.get("deployments", {}), dict):
            return _failure(400, "the body is {namespace, entry, hostToken, node, pods: [...], "
                                 "deployments: {NS/NAME: status}}")
        member = self._member(body)
        if member is None:
            return _failure(403, "not a host credential for that entry, or the entry has "
                                 "left the mesh (join again)")
        if not self.placing():
            return _failure(503, "this control-plane replica does not place pods now (another "
                                 "leads, or it has only just taken the lead): keep the pods "
                                 "running and sync again")
        stats = _sidecar_stats(body.get("stats"))
        if stats is None:
            return _failure(400, "stats is {nodeId: {stats, epoch}}, each a sidecar's /stats "
                                 "zlib-compressed in base64 and its process id")
        try:
            assigned = await asyncio.to_thread(
                self.pods.sync, member, body["node"], list(body.get("pods") or []),
                dict(body.get("deployments") or {}), stats)
        except HostPodsRefused as exc:
            return _failure(exc.status, str(exc), exc.code)
        return JSONResponse({"deployments": assigned,
                             "tcpTargets": self.pods.tcp_targets(body["node"]),
                             "reissue": self.pods.uncredentialed(body["node"])})

    async def credential(self, request: Request) -> Response:
        body = await _body(request)
        if body is None or set(body) != _CREDENTIAL or not all(
                isinstance(body[k], str) for k in _CREDENTIAL):
            return _failure(400, "the body is a JSON object with the strings "
                                 + ", ".join(sorted(_CREDENTIAL)))
        member = self._member(body)
        if member is None:
            return _failure(403, "not a host credential for that entry, or the entry has "
                                 "left the mesh (join again)")
        request_ = {"namespace": body["podNamespace"], "deployment": body["deployment"],
                    "nodeId": body["nodeId"], "csr": body["csr"], "keyFile": body["keyFile"]}
        try:
            answer = await asyncio.to_thread(self.pods.credential, member, body["node"],
                                             request_)
        except HostPodsRefused as exc:
            return _failure(exc.status, str(exc), exc.code)
        return JSONResponse(answer)

    def routes(self) -> list[Route]:
        return [Route(f"{API}/pods", self.sync, methods=["POST"]),
                Route(f"{API}/pod-credential", self.credential, methods=["POST"])]
