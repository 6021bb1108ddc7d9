"""RequestAuthentication ``jwtRules`` → the ``envoy.filters.http.jwt_authn`` filter, as
Istio builds it.

Istio's semantics, which users rely on: a request carrying a token that fails validation
(bad signature, expired, wrong issuer or audience) is rejected with 401; a request
carrying *no* token passes, and AuthorizationPolicy decides (``requestPrincipals: ["*"]``
is how one requires a token). So each provider is required as "this provider, or no token
at all"; with several providers a request passes when any one provider accepts its token
or none of their token locations holds one.

A verified token's payload is stored in the request's dynamic metadata under
``envoy.filters.http.jwt_authn`` / ``payload`` (:data:`~meshpilot.xds.translate.rbac.
JWT_PAYLOAD`), where the RBAC filters read ``iss``, ``sub``, ``aud``, ``azp`` and claims.

The rule fields are taken as :class:`JwtRule`, a small frozen dataclass named after
Istio's ``JWTRule`` fields, filled from the RequestAuthentication model by
:mod:`~meshpilot.xds.translate.workload_security`. Istio's istiod fetches a
``jwksUri`` itself and inlines the keys; translation does no I/O, so here Envoy fetches
it, through the cluster :func:`~meshpilot.xds.translate.clusters.jwks` builds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2, http_uri_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf import empty_pb2

from meshpilot.xds.translate import pb
from meshpilot.xds.translate.rbac import JWT_FILTER, JWT_PAYLOAD

JWKS_FETCH_TIMEOUT = "5s"
"""Istio's timeout for fetching a ``jwksUri``."""
JWKS_CACHE_DURATION = "300s"
"""How long Envoy keeps fetched keys (Istio: 5 minutes)."""


class UnsupportedJwtRule(ValueError):
    """A JWT rule that cannot be translated; ``field`` is the JWTRule field at fault."""

    def __init__(self, issuer: str, field: str, message: str) -> None:
        super().__init__(f"jwtRules[issuer={issuer!r}].{field}: {message}")
        self.issuer = issuer
        self.field = field


@dataclass(frozen=True)
class JwtHeader:
    """Istio's ``fromHeaders`` item: a header carrying the token after ``prefix``."""

    name: str
    prefix: str = ""


@dataclass(frozen=True)
class ClaimToHeader:
    """Istio's ``outputClaimToHeaders`` item: copy ``claim`` of a verified token into
    request header ``header``."""

    header: str
    claim: str


@dataclass(frozen=True)
class JwtRule:
    """The fields of Istio's ``JWTRule`` this translation reads.

    ``jwks`` is an inline JWKS document; else ``jwks_uri`` is fetched by Envoy through
    cluster ``jwks_cluster`` (which the caller must provide). No ``from_headers``,
    ``from_params`` nor ``from_cookies``: Envoy's (and Istio's) default locations,
    ``Authorization: Bearer <token>`` and the ``access_token`` query parameter.
    ``timeout`` bounds the ``jwks_uri`` fetch (Istio's default 5s).
    """

    issuer: str
    audiences: tuple[str, ...] = ()
    jwks: str | None = None
    jwks_uri: str | None = None
    jwks_cluster: str | None = None
    from_headers: tuple[JwtHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    from_cookies: tuple[str, ...] = ()
    forward_original_token: bool = False
    output_payload_to_header: str | None = None
    output_claim_to_headers: tuple[ClaimToHeader, ...] = ()
    timeout: str | None = None


def provider_name(index: int) -> str:
    """Istio's provider names: ``origins-<i>`` over the rules sorted by issuer."""
    return f"origins-{index}"


def _keys(rule: JwtRule, provider: jwt_pb2.JwtProvider) -> None:
    if rule.jwks:
        provider.local_jwks.CopyFrom(base_pb2.DataSource(inline_string=rule.jwks))
        return
    if not rule.jwks_uri:
        raise UnsupportedJwtRule(rule.issuer, "jwks", "set jwks or jwksUri")
    if not rule.jwks_cluster:
        raise UnsupportedJwtRule(rule.issuer, "jwksUri",
                                 "no cluster was given to fetch it through")
    provider.remote_jwks.CopyFrom(jwt_pb2.RemoteJwks(
        http_uri=http_uri_pb2.HttpUri(
            uri=rule.jwks_uri,
            cluster=rule.jwks_cluster,
            timeout=pb.duration(rule.timeout or JWKS_FETCH_TIMEOUT),
        ),
        cache_duration=pb.duration(JWKS_CACHE_DURATION),
    ))


def jwt_provider(rule: JwtRule) -> jwt_pb2.JwtProvider:
    """One rule as a provider: issuer, audiences, keys, token locations, what to forward,
    and the payload in metadata under ``payload`` for authorization."""
    if not rule.issuer:
        raise UnsupportedJwtRule(rule.issuer, "issuer", "an issuer is required")
    provider = jwt_pb2.JwtProvider(
        issuer=rule.issuer,
        audiences=list(rule.audiences),
        forward=rule.forward_original_token,
        forward_payload_header=rule.output_payload_to_header or "",
        payload_in_metadata=JWT_PAYLOAD,
        from_headers=[jwt_pb2.JwtHeader(name=h.name, value_prefix=h.prefix)
                      for h in rule.from_headers],
        from_params=list(rule.from_params),
        from_cookies=list(rule.from_cookies),
        claim_to_headers=[jwt_pb2.JwtClaimToHeader(header_name=c.header, claim_name=c.claim)
                          for c in rule.output_claim_to_headers],
    )
    _keys(rule, provider)
    return provider


def _by_name(name: str) -> jwt_pb2.JwtRequirement:
    return jwt_pb2.JwtRequirement(provider_name=name)


def _or(requirements: Sequence[jwt_pb2.JwtRequirement]) -> jwt_pb2.JwtRequirement:
    return jwt_pb2.JwtRequirement(
        requires_any=jwt_pb2.JwtRequirementOrList(requirements=list(requirements)))


def _valid_or_missing(name: str) -> jwt_pb2.JwtRequirement:
    return _or([_by_name(name), jwt_pb2.JwtRequirement(allow_missing=empty_pb2.Empty())])


def jwt_authentication(rules: Sequence[JwtRule]) -> jwt_pb2.JwtAuthentication | None:
    """The filter config for every JWT rule that applies to a workload (all its
    RequestAuthentications' rules together); None when there are none.

    One provider: "valid token from it, or no token". Several (Istio's form): any one
    provider's valid token, or, for every provider, its valid token or none; so an
    invalid token anywhere is refused unless another provider accepts a token.
    CORS preflights pass untouched, as in Istio.
    """
    ordered = sorted(rules, key=lambda r: r.issuer)
    if not ordered:
        return None
    providers = {provider_name(i): jwt_provider(rule) for i, rule in enumerate(ordered)}
    names = list(providers)
    if len(names) == 1:
        requirement = _valid_or_missing(names[0])
    else:
        every = jwt_pb2.JwtRequirement(requires_all=jwt_pb2.JwtRequirementAndList(
            requirements=[_valid_or_missing(n) for n in names]))
        requirement = _or([*(_by_name(n) for n in names), every])
    return jwt_pb2.JwtAuthentication(
        providers=providers,
        rules=[jwt_pb2.RequirementRule(match=rc.RouteMatch(prefix="/"), requires=requirement)],
        bypass_cors_preflight=True,
    )


def jwt_authn_filter(rules: Sequence[JwtRule]) -> hcm.HttpFilter | None:
    """The ``envoy.filters.http.jwt_authn`` HTTP filter for ``rules`` (see
    :func:`jwt_authentication`), to go before the RBAC filters; None without rules."""
    config = jwt_authentication(rules)
    if config is None:
        return None
    return hcm.HttpFilter(name=JWT_FILTER, typed_config=pb.pack(config))
