"""``?watch=true`` on a collection: its changes streamed as lines of JSON.

A watch outlives the request that opened it and polls the store's event queue, the
runtime's pod status and the bookmark clock; that loop, and how a watch ends (timeout,
a client too far behind, a disconnect), is this module's one job.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from meshpilot.api.kinds import KindInfo
from meshpilot.server import kube_responses, kube_subresources, kube_tables, kube_watch
from meshpilot.server.api_replies import failure
from meshpilot.server.api_views import ObjectViews
from meshpilot.store import Expired, StoredObject

_WATCH_POLL_SECONDS = 0.05
_LIVE_STATUS_SECONDS = 0.5  # how often a Deployment watch looks at its pods' status

WATCH_BACKLOG_LIMIT = 10_000
"""Events one API watch may have queued and unsent; a client further behind is cut off
with 410 Gone and resumes from the last resourceVersion it saw."""


def _gone_event(limit: int) -> bytes:
    """The ERROR event Kubernetes sends a watcher that fell too far behind (410 Gone)."""
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
              "reason": "Expired",
              "message": f"this watch fell more than {limit} events behind "
                         "and was closed; watch again from the last resourceVersion seen"}
    return (json.dumps({"type": "ERROR", "object": status}) + "\n").encode()


class CollectionWatch:
    """Opens watches on collections (see the module)."""

    def __init__(self, views: ObjectViews, watch_limit: int = WATCH_BACKLOG_LIMIT,
                 bookmark_seconds: float = kube_watch.BOOKMARK_SECONDS) -> None:
        self.views = views
        self.store = views.store
        self.watch_limit = watch_limit
        self.bookmark_seconds = bookmark_seconds

    def watch(self, request: Request, info: KindInfo, ns: str | None,
              selected: Callable[[StoredObject], bool]) -> Response:
        """Changes to ``info``'s objects as lines of JSON.

        For a Kubernetes client a resourceVersion of 0 or none means what it means to an
        API server: the current objects as ADDED events, then the changes; each object a
        Table when the client asks for one. Otherwise 0 replays the store's history."""
        raw = request.query_params.get("resourceVersion")
        kube = kube_responses.wants_kube(request)
        initial: list[StoredObject] = []
        try:
            since = int(raw) if raw else None
            timeout = float(request.query_params.get("timeoutSeconds", "300"))
            if kube and not since:
                since = self.store.revision()
                initial = self.store.list(group=info.group, kind=info.kind, namespace=ns)
            watch = self.store.watch(since, limit=self.watch_limit)
        except ValueError:
            return failure(400, "BadRequest", "resourceVersion and timeoutSeconds are numbers")
        except Expired as exc:
            return failure(410, "Expired", str(exc))
        version = request.path_params["version"]
        as_table = kube_tables.wants_table(request)
        views = self.views

        def wanted(obj: StoredObject) -> bool:
            key = obj.key
            return (key.kind == info.kind and key.group == info.group
                    and (ns is None or key.namespace == ns) and selected(obj))

        def line(kind: str, obj: StoredObject) -> bytes:
            body = views.served(obj, info, version)
            if as_table:
                body = views.table_body(info, [obj], version)
            return (json.dumps({"type": kind, "object": body}) + "\n").encode()

        # An async generator that polls without blocking: a sync one runs in a worker
        # thread blocked in watch.get() until the next event or the watch's timeout, so
        # a disconnected client leaked that thread and a SIGTERM could not stop the
        # process until every watch had timed out (300s by default).
        live = kube_subresources.LiveStatusWatch(views.live)
        if kube and not initial and info.kind == "Deployment" and views.live_status:
            for obj in self.store.list(group=info.group, kind=info.kind, namespace=ns):
                if wanted(obj):
                    live.follow(obj)

        def sent(kind: str, obj: StoredObject) -> bytes:
            live.sent(kind, obj)
            return line(kind, obj)

        bookmarks = kube_watch.Bookmarks(
            info.api_version(version), info.kind, since or 0, self.bookmark_seconds,
            enabled=kube and not as_table
            and request.query_params.get("allowWatchBookmarks") == "true")

        def ticks() -> list[bytes]:
            """What a quiet watch sends: Deployments whose pods changed (the objects did
            not), and a bookmark when one is due."""
            found = [sent("MODIFIED", obj) for obj in live.changed()]
            return [*found, *bookmarks.due(time.monotonic())]

        async def events() -> AsyncIterator[bytes]:
            deadline = time.monotonic() + timeout
            next_tick = time.monotonic() + _LIVE_STATUS_SECONDS
            try:
                for obj in initial:
                    if wanted(obj):
                        yield sent("ADDED", obj)
                while time.monotonic() < deadline:
                    event = watch.get(timeout=0)
                    if event is None and watch.overflowed:
                        yield _gone_event(self.watch_limit)
                        return
                    if event is not None:
                        bookmarks.saw(event.resource_version)
                        if wanted(event.object):
                            yield sent(event.type, event.object)
                    elif time.monotonic() >= next_tick:
                        next_tick = time.monotonic() + _LIVE_STATUS_SECONDS
                        for chunk in ticks():
                            yield chunk
                    else:
                        await asyncio.sleep(_WATCH_POLL_SECONDS)
            finally:
                watch.close()

        # client-go picks its stream decoder by this type; it has none for ndjson
        media = "application/json" if kube else "application/x-ndjson"
        return StreamingResponse(events(), media_type=media)
