"""Shared building blocks for the typed resource models.

Every model forbids unknown fields, because a misspelt field (``weigth``) that is
silently dropped is a traffic rule that silently does not exist. Python attributes
are snake_case; the YAML field names users write are camelCase aliases, exactly as
Istio, Kubernetes and Flagger spell them.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from meshpilot.api.names import NAMESPACE_LABEL, SUBDOMAIN, NameRule, explain, name_problem


class Model(BaseModel):
    """Base for every spec fragment: strict about field names, camelCase on the wire."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        frozen=False,
    )


class OpenModel(BaseModel):
    """For fragments whose keys are user data (labels, free-form metadata)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = MappingProxyType({
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
})


def parse_duration(value: str) -> float:
    """Parse a Go/Istio duration string (``1.5s``, ``100ms``, ``1h30m``) into seconds.

    Istio and Flagger both accept Go's ``time.ParseDuration`` syntax, so users write
    ``3m`` for a base ejection time and ``30s`` for an analysis interval.
    Raises ValueError with the accepted syntax when the string does not parse.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty duration; write e.g. 500ms, 10s, 1m, 1h30m")
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(
            f"duration {value!r} does not parse; write a number followed by a unit "
            "(ns, us, ms, s, m, h), e.g. 500ms, 10s, 1m, 1h30m"
        )
    return total


def _check_duration(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str):
        raise PydanticCustomError(
            "mp_duration", "duration must be a string such as 500ms, 10s or 1m"
        )
    try:
        parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("mp_duration", str(exc)) from None
    return value


Duration = Annotated[str, BeforeValidator(_check_duration)]
"""A duration kept as the user wrote it (``10s``), checked to parse."""

Port = Annotated[int, Field(ge=1, le=65535)]
"""A TCP/UDP port number."""

Percent = Annotated[float, Field(ge=0, le=100)]
"""A percentage from 0 to 100."""

Labels = dict[str, str]


class ObjectMeta(Model):
    """The parts of Kubernetes ObjectMeta that a mesh without Kubernetes keeps.

    ``name`` follows NAME_RULE, a DNS subdomain for most kinds; a kind with a stricter
    rule (Service) has its own subclass. See :mod:`meshpilot.api.names`."""

    NAME_RULE: ClassVar[NameRule] = SUBDOMAIN

    name: str
    namespace: str = "default"
    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    resource_version: str | None = None
    generation: int | None = None
    uid: str | None = None
    creation_timestamp: str | None = None
    managed_fields: list[dict[str, Any]] | None = Field(
        default=None, description="Which field manager set which fields; written by the "
        "server on writes through the Kubernetes API (server-side apply).")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        problem = name_problem(value, cls.NAME_RULE)
        if problem:
            raise PydanticCustomError(
                "mp_value", explain("name", value, cls.NAME_RULE, problem))
        return value

    @field_validator("namespace")
    @classmethod
    def _valid_namespace(cls, value: str) -> str:
        problem = name_problem(value, NAMESPACE_LABEL)
        if problem:
            raise PydanticCustomError(
                "mp_value", explain("namespace", value, NAMESPACE_LABEL, problem))
        return value


class Resource(Model):
    """A top-level object: apiVersion, kind, metadata and a kind-specific body."""

    SENSITIVE_FIELDS: ClassVar[frozenset[str]] = frozenset()
    """Top-level fields (wire names) whose values are credentials: a diagnostic about
    them names the field and the problem, never the value."""

    api_version: str
    kind: str
    metadata: ObjectMeta
    status: dict[str, Any] | None = Field(
        default=None, description="Written by meshpilot; ignored on apply, as kubectl does."
    )


def _re2_options() -> Any:
    import re2

    options = re2.Options()
    options.log_errors = False
    return options


def check_re2(pattern: str) -> str | None:
    """Why Envoy's RE2 engine would refuse ``pattern``, or None if it compiles.

    Envoy matches with Google RE2 (no lookaround, no back-references). Catching such a
    pattern here means a clear apply error instead of a proxy NACK later.
    """
    import re2

    try:
        re2.compile(pattern, options=_re2_options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        return str(reason)
    return None


def _check_regex(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError("mp_type", "regex must be a string")
    reason = check_re2(value)
    if reason is not None:
        raise PydanticCustomError(
            "mp_regex",
            "regex {pattern} is not valid RE2 (Envoy's engine): {reason}; "
            "RE2 has no lookahead, lookbehind or back-references",
            {"pattern": repr(value), "reason": reason},
        )
    return value


Regex = Annotated[str, BeforeValidator(_check_regex)]
"""A regular expression that Envoy's RE2 engine accepts."""
