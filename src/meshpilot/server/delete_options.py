"""The preconditions of a DELETE of one object, from its query and its DeleteOptions body.

A client that read an object and decides to delete it says which version it read:
``?resourceVersion=N``, or Kubernetes' DeleteOptions body with ``preconditions``
(``resourceVersion``, ``uid``). The delete happens only if the stored object is still
that one; a precondition that cannot be read is refused rather than ignored, since
ignoring it would delete what the client did not mean to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class BadPreconditions(ValueError):
    """The request's preconditions cannot be read; the message says which and why."""


@dataclass(frozen=True)
class Preconditions:
    resource_version: int | None = None
    uid: str | None = None


def _version(raw: Any, where: str) -> int:
    text = str(raw).strip()
    if not text.isdigit():
        raise BadPreconditions(
            f"{where} {raw!r} is not a resourceVersion this store issues (a whole number, "
            "as `meshpilot get -o yaml` shows it); nothing was deleted")
    return int(text)


def _from_body(body: Any) -> tuple[int | None, str | None]:
    if body is None:
        return None, None
    if not isinstance(body, dict) or body.get("kind", "DeleteOptions") != "DeleteOptions":
        raise BadPreconditions("the body of a DELETE must be a DeleteOptions object "
                               '({"kind": "DeleteOptions", "preconditions": {...}}) or empty')
    pre = body.get("preconditions") or {}
    if not isinstance(pre, dict) or set(pre) - {"resourceVersion", "uid"}:
        raise BadPreconditions("preconditions may hold resourceVersion and uid only")
    version = pre.get("resourceVersion")
    uid = pre.get("uid")
    if uid is not None and not isinstance(uid, str):
        raise BadPreconditions(f"preconditions.uid {uid!r} is not a string")
    return (None if version in (None, "") else
            _version(version, "preconditions.resourceVersion")), uid or None


def read_preconditions(query_version: str | None, body: Any) -> Preconditions:
    """The preconditions of ``?resourceVersion=`` and the DeleteOptions ``body``; both
    may be given only if they agree."""
    from_query = (None if query_version in (None, "")
                  else _version(query_version, "?resourceVersion="))
    from_body, uid = _from_body(body)
    if None not in (from_query, from_body) and from_query != from_body:
        raise BadPreconditions(
            f"?resourceVersion={from_query} and preconditions.resourceVersion {from_body} "
            "disagree; give one")
    return Preconditions(from_query if from_query is not None else from_body, uid)


_POLICIES = ("Background", "Foreground", "Orphan")


def refuse_orphaning(query_policy: str | None, body: Any) -> None:
    """BadPreconditions for a delete that asks to orphan the object's dependents
    (``kubectl delete --cascade=orphan``: ``propagationPolicy: Orphan`` or
    ``orphanDependents: true``). A Deployment's pods are the runtime's processes and stop
    with it; leaving them running is not something meshpilot can do, so such a delete is
    refused rather than carried out differently. Background and Foreground both delete
    the dependents, which is what happens."""
    options = body if isinstance(body, dict) else {}
    policy = query_policy or options.get("propagationPolicy")
    if policy not in (None, "", *_POLICIES):
        raise BadPreconditions(f"propagationPolicy {policy!r}: use Background or Foreground")
    if policy == "Orphan" or options.get("orphanDependents") is True:
        raise BadPreconditions(
            "propagationPolicy Orphan (--cascade=orphan) is not supported: a Deployment's "
            "pods stop with it; delete with the default --cascade=background; nothing was "
            "deleted")
