"""Istio's ``security.istio.io`` RequestAuthentication: which JSON Web Tokens a workload's
sidecar validates, where it finds them and what it passes on.

Field names follow the Istio reference (RequestAuthentication and JWTRule). As for the
other security kinds, the model makes the checks istiod's webhook makes (an issuer on
every rule, one key source per rule, key sets that parse), so a rule Envoy's JWT filter
could not use is refused at apply rather than failing at request time.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from meshpilot.api.base import Duration, Model, Resource
from meshpilot.api.security import WorkloadSelector

NonEmpty = Annotated[str, Field(min_length=1)]

_JWKS_URI_MAX = 2048  # Istio's limit on jwksUri


class JwtHeader(Model):
    """A header the token is read from; ``prefix`` (``"Bearer "``) is stripped first."""

    name: NonEmpty
    prefix: str | None = None


class ClaimToHeader(Model):
    """Copy one claim of a verified token into a request header for the application."""

    header: str = Field(min_length=1, pattern=r"^[-_A-Za-z0-9]+$")
    claim: NonEmpty


def _check_jwks_uri(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError(
            "mp_value",
            "jwksUri {uri} is not an http:// or https:// URL with a host, e.g. "
            "https://example.com/.well-known/jwks.json",
            {"uri": repr(value)},
        )
    if len(value) > _JWKS_URI_MAX:
        raise PydanticCustomError(
            "mp_value", "jwksUri is longer than {limit} characters", {"limit": _JWKS_URI_MAX})
    return value


def _jwks_problem(value: str) -> str | None:
    """Why ``value`` is not a JSON Web Key Set (RFC 7517 section 5), or None."""
    try:
        document = json.loads(value)
    except json.JSONDecodeError as exc:
        return f"it is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        return 'it has no "keys" list'
    for i, key in enumerate(keys):
        if not isinstance(key, dict) or not isinstance(key.get("kty"), str):
            return f'keys[{i}] is not a JSON Web Key (an object with a "kty" member)'
    return None


class JwtRule(Model):
    """One accepted issuer: its keys (``jwksUri`` or inline ``jwks``, else OpenID
    discovery), the audiences it may address, and where the token travels."""

    issuer: NonEmpty
    audiences: list[NonEmpty] | None = None
    jwks_uri: str | None = None
    jwks: str | None = None
    from_headers: list[JwtHeader] | None = None
    from_params: list[NonEmpty] | None = None
    from_cookies: list[NonEmpty] | None = None
    output_payload_to_header: NonEmpty | None = None
    output_claim_to_headers: list[ClaimToHeader] | None = None
    forward_original_token: bool | None = None
    timeout: Duration | None = None

    @field_validator("jwks_uri")
    @classmethod
    def _jwks_uri(cls, value: str | None) -> str | None:
        return None if value is None else _check_jwks_uri(value)

    @field_validator("jwks")
    @classmethod
    def _jwks(cls, value: str | None) -> str | None:
        problem = None if value is None else _jwks_problem(value)
        if problem is not None:
            raise PydanticCustomError(
                "mp_value",
                'jwks is not a JSON Web Key Set (a JSON object with a "keys" list, written as '
                "a string): {problem}",
                {"problem": problem},
            )
        return value

    @model_validator(mode="after")
    def _istio_checks(self) -> JwtRule:
        if self.jwks is not None and self.jwks_uri is not None:
            raise PydanticCustomError(
                "mp_value", "set jwks (the key set inline) or jwksUri (where to fetch it), "
                "not both")
        headers = [c.header.lower() for c in self.output_claim_to_headers or []]
        twice = sorted({h for h in headers if headers.count(h) > 1})
        if twice:
            raise PydanticCustomError(
                "mp_value", "outputClaimToHeaders writes header {headers} more than once",
                {"headers": ", ".join(twice)})
        return self


class RequestAuthenticationSpec(Model):
    """No ``jwtRules`` is valid and validates nothing; a request without a token is never
    refused here (an AuthorizationPolicy on requestPrincipals does that)."""

    selector: WorkloadSelector | None = None
    # Gateway/Service attachment (group, kind, name, namespace); kept loose, as on
    # AuthorizationPolicy: validation checks its shape and refuses it (sidecars only).
    target_ref: dict[str, Any] | None = None
    target_refs: list[dict[str, Any]] | None = None
    jwt_rules: list[JwtRule] | None = None

    @model_validator(mode="after")
    def _one_attachment(self) -> RequestAuthenticationSpec:
        if self.selector is not None and (self.target_ref or self.target_refs):
            raise PydanticCustomError(
                "mp_value", "selector and targetRef/targetRefs are mutually exclusive")
        if self.target_ref and self.target_refs:
            raise PydanticCustomError("mp_value", "set targetRef or targetRefs, not both")
        return self


class RequestAuthentication(Resource):
    api_version: str = "security.istio.io/v1"
    kind: Literal["RequestAuthentication"] = "RequestAuthentication"
    spec: RequestAuthenticationSpec = Field(default_factory=RequestAuthenticationSpec)
