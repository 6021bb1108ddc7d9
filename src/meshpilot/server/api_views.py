"""How a read serves a stored object: as stored, with what the runtime knows filled in.

The store holds a Deployment's spec but not its pods; every read (get, list, watch, the
status subresource, kubectl's Table) serves it with the runtime's status, so each goes
through one :class:`ObjectViews`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.responses import JSONResponse, Response

from meshpilot.api.identity import ObjectKey
from meshpilot.api.kinds import KindInfo
from meshpilot.server import kube_subresources, kube_tables
from meshpilot.server.api_replies import render
from meshpilot.store import ConfigStore, StoredObject

# Live status of an object that the store does not hold (a Deployment's pods, from the
# runtime), by key; None when nothing runs it.
LiveStatus = Callable[[ObjectKey], dict[str, Any] | None]


class ObjectViews:
    """Stored objects as reads serve them (see the module)."""

    def __init__(self, store: ConfigStore, live_status: LiveStatus | None = None) -> None:
        self.store = store
        self.live_status = live_status

    def table(self, info: KindInfo, objects: Sequence[StoredObject], version: str) -> Response:
        return JSONResponse(self.table_body(info, objects, version))

    def table_body(self, info: KindInfo, objects: Sequence[StoredObject],
                   version: str) -> dict[str, Any]:
        """kubectl get's Table, a Deployment's status filled in from the runtime."""
        bodies = [self.served(obj, info, version) for obj in objects]
        return kube_tables.table(info.kind, bodies, str(self.store.revision()))

    def served(self, obj: StoredObject, info: KindInfo,
               version: str | None = None) -> dict[str, Any]:
        """The object as a read serves it: a Deployment with its pods' status from the
        runtime (which the store does not hold)."""
        body = render(obj, info, version)
        live = self.live(obj)
        if live is not None:
            body["status"] = kube_subresources.deployment_status(body, live)
        return body

    def live(self, obj: StoredObject) -> dict[str, Any] | None:
        return self.live_status(obj.key) if self.live_status is not None else None
