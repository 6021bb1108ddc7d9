"""Kubernetes' answer shapes for writes at the Kubernetes-style paths, for Kubernetes
clients (kubectl): the stored object after a create, update or patch, a ``Status`` after
a delete or a refusal.

meshpilot's own clients get its :class:`Outcome` (``results`` and ``diagnostics``) at
the same paths. The two are told apart by the Accept header: client-go always names
``application/json`` (or a Table of it), while httpx and curl send ``*/*`` unless told
otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from meshpilot.api.kinds import KindInfo
from meshpilot.server.config_service import Outcome
from meshpilot.validation import Diagnostic, codes

# HTTP status → metav1.StatusReason, for the statuses an Outcome carries
_REASONS: Mapping[int, str] = MappingProxyType({
    400: "BadRequest", 404: "NotFound", 409: "Conflict", 413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType", 422: "Invalid", 507: "InternalError"})


def wants_kube(request: Request) -> bool:
    """Whether the client asked for JSON by name, as every Kubernetes client does."""
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip() == "application/json" for part in accept.split(","))


def _warning_headers(warnings: list[Diagnostic]) -> dict[str, str]:
    """Warnings as one RFC 7234 ``Warning`` header (code 299), which kubectl prints as
    ``Warning: ...`` lines; quotes and backslashes escaped, non-ASCII left out."""
    texts = []
    for d in warnings:
        subject = f" [{d.object}]" if d.object else ""
        text = f"{d.code}{subject} {d.path + ': ' if d.path else ''}{d.message}"
        text = text.encode("ascii", "replace").decode().replace("\\", "\\\\").replace('"', '\\"')
        texts.append(f'299 - "{text}"')
    return {"Warning": ", ".join(texts)} if texts else {}


def _details(info: KindInfo, name: str) -> dict[str, Any]:
    return {"name": name, "group": info.group, "kind": info.kind}


def status(code: int, message: str, info: KindInfo, name: str,
           causes: list[dict[str, str]] | None = None,
           headers: dict[str, str] | None = None, reason: str = "") -> JSONResponse:
    """A metav1.Status: Success for 2xx, else Failure with ``reason`` (by default the
    one of ``code``)."""
    ok = code < 300
    details = _details(info, name)
    if causes:
        details["causes"] = causes
    body: dict[str, Any] = {
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Success" if ok else "Failure", "message": message,
        "reason": "" if ok else reason or _REASONS.get(code, "InternalError"),
        "details": details, "code": code}
    return JSONResponse(body, status_code=code, headers=headers)


LENIENT_FIELD_VALIDATION = frozenset({"Ignore", "Warn"})
"""What ``kubectl --validate=false`` / ``--validate=warn`` send as ``fieldValidation``."""
STRICT_FIELDS_NOTE = (" (meshpilot refuses unknown fields whatever --validate asks: a field"
                      " it would drop is never accepted silently)")


def refusal(outcome: Outcome, info: KindInfo, name: str, *,
            create_only: bool = False, field_validation: str | None = None) -> JSONResponse:
    """A refused write as a Status whose causes name each field, with meshpilot's
    diagnostic code (``reason``) and message: kubectl prints ``field: message`` lines.
    A create refused with 409 is AlreadyExists, as clients test for that reason.

    An API server drops unknown fields when asked to (``fieldValidation`` Ignore or
    Warn); meshpilot does not, since a dropped field is one the user believes applied,
    so such a request is refused like a strict one and its message says why."""
    errors = [d for d in outcome.diagnostics if d.is_error] or outcome.diagnostics
    lenient = field_validation in LENIENT_FIELD_VALIDATION

    def text(d: Diagnostic) -> str:
        note = STRICT_FIELDS_NOTE if lenient and d.code == codes.UNKNOWN_FIELD.code else ""
        return f"{d.message}{note}"

    causes = [{"reason": d.code, "message": f"{text(d)} ({d.code})", "field": d.path}
              for d in errors]
    summary = "; ".join(f"{d.path + ': ' if d.path else ''}{text(d)}" for d in errors)
    what = f'{info.plural}{"." + info.group if info.group else ""} "{name}"'
    message = (f"{what} is invalid: {summary}" if outcome.status == 422
               else summary or what)
    warnings = [d for d in outcome.diagnostics if not d.is_error]
    reason = "AlreadyExists" if create_only and outcome.status == 409 else ""
    return status(outcome.status, message, info, name, causes, _warning_headers(warnings),
                  reason=reason)


def written(body: dict[str, Any], outcome: Outcome, created: bool) -> JSONResponse:
    """The object as stored, 201 when the write created it; the write's warnings as
    Warning headers."""
    return JSONResponse(body, status_code=201 if created else 200,
                        headers=_warning_headers(outcome.diagnostics))


def deleted(outcome: Outcome, info: KindInfo, name: str) -> JSONResponse:
    """A Success Status for a delete (what an API server answers when the object is gone
    at once), with what the delete left broken as warnings."""
    return status(200, f"{info.kind} {name} deleted", info, name,
                  headers=_warning_headers(outcome.diagnostics))
