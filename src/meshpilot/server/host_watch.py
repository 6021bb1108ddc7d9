"""The route a joined host's agent holds open to learn, at once, when to sync.

A host reports and syncs its pods each round (a quarter of ``up --host-timeout``). Some
changes cannot wait for the next round: a control plane that restarted (or a replica that
took over as leader) knows the host's pods again only from its next sync, and a
Deployment newly placed on the host's node runs there only from it. So the agent also
holds ``POST /apis/meshpilot.io/v1/hosts/watch`` ``{"namespace", "entry", "hostToken",
"node", "since"}`` open (authenticated by the host's credential, like its reports):

- The answer is an ``epoch``: this control-plane process (a random id made at start),
  whether it leads, which replica leads, and how often what ``node`` is to run changed.
  It comes at once when it differs from ``since``, else when it changes, else after
  :data:`HOLD_SECONDS` (or when the server stops), with the live replicas.
- The agent syncs at once when the epoch it gets differs from the one it held, and when
  a watch comes back after its connection broke (the control plane died; the agent tries
  again every fraction of a second until one answers).

The route is long-polled rather than streamed so that every answer is an ordinary JSON
body through the same API and TLS as the host's other calls; the wait is a loop of short
sleeps, which a server that stops ends within one of them.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meshpilot.server.host_registry import HostRegistry

API = "/apis/meshpilot.io/v1/hosts"
PATH = f"{API}/watch"
HOLD_SECONDS = 10.0
"""How long an unchanged watch is held before it is answered anyway (the agent asks
again at once): short enough that a dead connection is noticed without TCP keepalive."""
STEP_SECONDS = 0.2
"""How often a held watch looks at the epoch (and at whether the server stops)."""
_FIELDS = ("namespace", "entry", "hostToken", "node", "since")


def never() -> bool:
    return False


def _failure(status: int, message: str) -> JSONResponse:
    return JSONResponse({"kind": "Status", "status": "Failure", "code": status,
                         "message": message}, status_code=status)


class HostWatch:
    """The watch route for one control-plane process (see the module)."""

    def __init__(self, registry: HostRegistry, node_version: Callable[[str], int],
                 hold: float = HOLD_SECONDS, step: float = STEP_SECONDS) -> None:
        self.registry = registry
        self.node_version = node_version
        self.hold, self.step = hold, step
        self.instance = secrets.token_hex(8)
        """This process: a restarted control plane has another one."""

    def epoch(self, node: str) -> str:
        """What a host's agent compares with what it held (see the module)."""
        leader = next((r["api"] for r in self.registry.reachable() if r.get("leading")), "")
        leading = "leading" if self.registry.leading() else "following"
        return f"{self.instance}/{leading}/{leader}/{self.node_version(node) if node else 0}"

    async def watch(self, request: Request, stopping: Callable[[], bool]) -> Response:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str)
                                                 for k in _FIELDS):
            return _failure(400, "the body is a JSON object with the strings "
                                 + ", ".join(_FIELDS))
        if self.registry.member(body["namespace"], body["entry"], body["hostToken"]) is None:
            return _failure(403, "not a host credential for that entry, or the entry has "
                                 "left the mesh (join again)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hold
        epoch = self.epoch(body["node"])
        while epoch == body["since"] and not stopping() and loop.time() < deadline:
            await asyncio.sleep(self.step)
            epoch = self.epoch(body["node"])
        return JSONResponse({"epoch": epoch, "replicas": self.registry.reachable()})

    def routes(self, stopping: Callable[[], bool] = never) -> list[Route]:
        async def watch(request: Request) -> Response:
            return await self.watch(request, stopping)
        return [Route(PATH, watch, methods=["POST"])]

