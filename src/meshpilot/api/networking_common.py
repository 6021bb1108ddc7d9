"""What Istio's networking kinds share: value types, the checks Istio's admission makes
on any of them (one-of groups, protocols, weights, exportTo), and the string and header
matchers their routes and policies use."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Model, Percent, Port, Regex

NonNegInt = Annotated[int, Field(ge=0)]
"""A count or weight (protobuf uint32/int32 where Istio refuses negatives)."""

IntPercent = Annotated[int, Field(ge=0, le=100)]
"""An integer percentage, as used by legacy fields such as ``mirrorPercent``."""

HTTPStatus = Annotated[int, Field(ge=200, le=599)]
"""An HTTP status Istio accepts for aborts and direct responses."""

# Protocols Istio's protocol.Parse recognises (case-insensitively) for Gateway and
# ServiceEntry ports; anything else becomes "unsupported" and is refused by validation.
_PROTOCOLS = frozenset(
    {
        "HTTP",
        "HTTPS",
        "HTTP2",
        "HTTP_PROXY",
        "GRPC",
        "GRPC-WEB",
        "TCP",
        "TLS",
        "UDP",
        "MONGO",
        "REDIS",
        "MYSQL",
    }
)


def one_of(model: Model, names: tuple[str, ...], *, required: bool, what: str) -> None:
    """Enforce a protobuf ``oneof``: at most one (or exactly one) of ``names`` is set.

    Wire names are used in the message because that is what the user wrote.
    """
    fields = type(model).model_fields
    wire = [fields[n].alias or n for n in names]
    present = [w for n, w in zip(names, wire, strict=True) if getattr(model, n) is not None]
    if len(present) > 1 or (required and not present):
        need = "exactly one" if required else "at most one"
        raise PydanticCustomError(
            "mp_value",
            "{what} takes {need} of {valid}; got {got}",
            {
                "what": what,
                "need": need,
                "valid": ", ".join(wire),
                "got": ", ".join(present) if present else "none",
            },
        )


def check_protocol(value: str | None) -> str | None:
    """A port's protocol as Istio parses it (Gateway, ServiceEntry and Sidecar ports):
    refused here when Istio would treat it as unsupported."""
    if value is not None and value.upper() not in _PROTOCOLS:
        raise PydanticCustomError(
            "mp_value",
            "protocol {protocol} is not supported; use one of {valid}",
            {"protocol": repr(value), "valid": ", ".join(sorted(_PROTOCOLS))},
        )
    return value


def check_weights(routes: list[Any]) -> list[Any]:
    """Weights are relative, but two or more destinations that all weigh 0 route nothing.

    Istio refuses this ("total destination weight = 0"); an omitted weight counts as 0.
    """
    if len(routes) > 1 and sum(r.weight or 0 for r in routes) == 0:
        raise PydanticCustomError(
            "mp_weights",
            "all {count} destinations have weight 0 (an omitted weight is 0), so no "
            "traffic would be routed; give at least one destination a positive weight",
            {"count": len(routes)},
        )
    return routes


NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
"""A Kubernetes namespace name (a DNS label), as exportTo and Sidecar egress hosts name one."""


def _check_export_to(value: list[str]) -> list[str]:
    """Istio's exportTo: ``*`` (every namespace), ``.`` (its own), ``~`` (none, and
    alone), or namespace names; each at most once."""
    bad = [e for e in value if e not in ("*", ".", "~") and not NAMESPACE_NAME.fullmatch(e)]
    if bad or len(set(value)) != len(value) or ("~" in value and len(value) > 1):
        why = (f"{bad[0]!r} is not a namespace name" if bad else "'~' (no namespace) "
               "stands alone" if "~" in value and len(value) > 1 else "an entry repeats")
        raise PydanticCustomError(
            "mp_value",
            "exportTo: {why}; give '*' (every namespace), '.' (this one), '~' (none) or "
            "namespace names, each once",
            {"why": why},
        )
    return value


ExportTo = Annotated[list[str], AfterValidator(_check_export_to)]


class StringMatch(Model):
    """Match a string exactly, by prefix, or by RE2 regex; exactly one must be given."""

    allow_empty: ClassVar[bool] = False

    exact: str | None = None
    prefix: str | None = None
    regex: Regex | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StringMatch:
        present = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(present) > 1 or (not present and not self.allow_empty):
            raise PydanticCustomError(
                "mp_value",
                "a string match takes exactly one of exact, prefix, regex; got {got}",
                {"got": ", ".join(present) if present else "none"},
            )
        return self


class PresenceStringMatch(StringMatch):
    """A StringMatch for headers and query parameters, where ``{}`` means "is present".

    Istio documents ``myheader: {}`` as a presence check, so an empty match is valid here.
    """

    allow_empty: ClassVar[bool] = True


class PortSelector(Model):
    """Selects a destination port by number."""

    number: Port


class Percentage(Model):
    """A percentage wrapper (``percentage: {value: 12.5}``) allowing fractions."""

    value: Percent = 0.0


class HeaderOperations(Model):
    """Header edits; ``set`` overwrites, ``add`` appends, ``remove`` deletes."""

    set_: dict[str, str] = Field(default_factory=dict, alias="set")
    add: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class Headers(Model):
    """Header edits for the request sent upstream and the response sent back."""

    request: HeaderOperations | None = None
    response: HeaderOperations | None = None
