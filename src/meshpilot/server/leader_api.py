"""``GET /apis/meshpilot.io/v1/leader``: which control-plane replica leads.

Every replica answers the same question the same way (etcd holds the answer), so an
operator, or a test, can ask any of them; ``leading`` says whether the one asked is it.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from meshpilot.store.election import AlwaysLeader, Election

PATH = "/apis/meshpilot.io/v1/leader"


class LeaderAPI:
    def __init__(self, leadership: AlwaysLeader | Election) -> None:
        self._leadership = leadership

    async def status(self, request: Request) -> JSONResponse:
        leader = await asyncio.to_thread(self._leadership.leader)
        return JSONResponse({"identity": self._leadership.identity,
                             "leading": self._leadership.leading(), "leader": leader})

    def routes(self) -> list[Route]:
        return [Route(PATH, self.status)]
