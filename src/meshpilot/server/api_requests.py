"""How the control plane's HTTP API reads a request: the kind its path names and its body.

kubectl sends JSON for most writes but protobuf for its typed commands; reading both in one
place keeps every handler's refusals of an unreadable body the same.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from meshpilot.api.kinds import KindInfo, by_path
from meshpilot.server import kube_protobuf
from meshpilot.server.request_body import BadBody, parse_json


class UnsupportedBody(BadBody):
    """A body in a media type meshpilot does not read (Kubernetes' protobuf)."""


def kind_of(request: Request) -> KindInfo:
    """The kind the path's group, version and plural name (:class:`UnknownKind` if none)."""
    p = request.path_params
    return by_path(p.get("group", ""), p["version"], p["plural"])


async def read_body(request: Request) -> Any:
    """The body as JSON; :class:`BadBody` (a ValueError) with where and why if not.

    kubectl's typed commands (``create namespace``, ``create configmap``) send
    protobuf: the kinds :mod:`kube_protobuf` reads are taken, others get 415 and a
    way that works."""
    media = request.headers.get("content-type", "").split(";")[0].strip()
    if media == kube_protobuf.MEDIA_TYPE:
        try:
            return kube_protobuf.decode(await request.body())
        except (kube_protobuf.UnreadableProtobuf, UnicodeDecodeError) as exc:
            raise UnsupportedBody(str(exc)) from None
    return parse_json(await request.body())
