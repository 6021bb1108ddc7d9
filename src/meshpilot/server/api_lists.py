"""A GET of a collection: its objects as a List or a Table, or a watch of them.

List and watch select objects by the same fieldSelector and labelSelector, so both are
answered here from one predicate.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from meshpilot.api.kinds import KindInfo
from meshpilot.server import kube_selectors, kube_tables
from meshpilot.server.api_replies import failure
from meshpilot.server.api_views import ObjectViews
from meshpilot.server.api_watch import CollectionWatch
from meshpilot.store import StoredObject


def selection(request: Request) -> Callable[[StoredObject], bool]:
    """The list's or watch's fieldSelector and labelSelector as one predicate."""
    fields = kube_selectors.field_selector(request.query_params.get("fieldSelector"))
    labels = kube_selectors.label_selector(request.query_params.get("labelSelector"))
    return lambda obj: fields(obj.key) and labels(obj.body)


class CollectionReads:
    """Lists and watches of one kind's objects (see the module)."""

    def __init__(self, views: ObjectViews, watches: CollectionWatch) -> None:
        self.views = views
        self.store = views.store
        self.watches = watches

    def read(self, request: Request, info: KindInfo, ns: str | None) -> Response:
        """``info``'s objects (in ``ns``, or every namespace when None) as selected."""
        try:
            selected = selection(request)
        except ValueError as exc:
            return failure(400, "BadRequest", str(exc))
        if request.query_params.get("watch") in ("true", "1"):
            return self.watches.watch(request, info, ns, selected)
        version = request.path_params["version"]
        items = [o for o in self.store.list(group=info.group, kind=info.kind, namespace=ns)
                 if selected(o)]
        if kube_tables.wants_table(request):
            return self.views.table(info, items, version)
        return JSONResponse({
            "apiVersion": info.api_version(version),
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": str(self.store.revision())},
            "items": [self.views.served(o, info, version) for o in items],
        })
