"""AuthorizationPolicy → Envoy RBAC filters, with Istio's semantics and names.

Which policies govern a workload, and in which group, is decided by
``meshpilot.security.authorization_for``; this module turns each group into one RBAC
filter, in Istio's order: AUDIT (action LOG, which only marks requests for the access
log, first so it sees every request), DENY (any match is refused), ALLOW (once any ALLOW
policy applies, a request must match one). A denied HTTP request gets Envoy's own answer,
403 ``RBAC: access denied``; a denied TCP connection is closed.

Each rule of a policy becomes one RBAC policy named ``ns[<namespace>]-policy[<name>]-rule[<i>]``
(Istio's naming, which ``istioctl`` users read in config dumps). A rule is a match when
one of its ``from`` sources (fields ANDed, values ORed, ``not`` values negated) and one of
its ``to`` operations match, and every ``when`` condition holds; an absent part matches
anything, so the rule ``{}`` matches every request. A policy with no rules matches
nothing: in ALLOW (``spec: {}``) that allows nothing.

Identities: principals are written without ``spiffe://`` (``cluster.local/ns/default/sa/
sleep``) and matched against the URI SAN of the peer's mTLS certificate; ``cluster.local``
stands for the mesh's own trust domain (as in Istio). Request principals
(``<iss>/<sub>``), audiences, presenter and claims are read from the JWT payload the
``envoy.filters.http.jwt_authn`` filter stores under ``payload`` (see ``jwt.py``).
Values may use ``*`` as a whole value, a prefix (``*suffix``) or a suffix (``prefix*``).

TCP (:func:`network_rbac_filters`) follows Istio's "Authorization for TCP traffic": a rule
that uses an HTTP-only field (hosts, methods, paths, request principals, request headers,
``request.auth.*``) never matches in an ALLOW policy (the rule is dropped, so less is
allowed), while in DENY and AUDIT policies the HTTP-only fields are ignored (the rest of
the rule applies, so more is denied: a DENY rule of HTTP-only fields denies every
connection).

Not translated, refused with :class:`UnsupportedAuthorization` (never dropped in
silence): CUSTOM policies (external authorizers), ``experimental.*`` and other ``when``
keys Istio does not document for sidecars, and values Istio would read differently from
what they say (a ``*`` inside a value, a principal written with ``spiffe://``).
Policies annotated ``istio.io/dry-run: "true"`` go to the filter's shadow rules (evaluated
and counted, never enforced), as in Istio.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from envoy.config.core.v3 import address_pb2, extension_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2

from meshpilot.api.security import AuthorizationPolicy, Condition, Operation, Rule, Source
from meshpilot.security.authorization import AppliedPolicy, WorkloadAuthorization
from meshpilot.security.policy_scope import PolicyRef
from meshpilot.xds.translate import pb

HTTP_RBAC_FILTER = "envoy.filters.http.rbac"
NETWORK_RBAC_FILTER = "envoy.filters.network.rbac"
TCP_STAT_PREFIX = "tcp."
"""Istio's stat prefix for the network RBAC filter (``tcp.rbac.allowed``...)."""
JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_PAYLOAD = "payload"
"""Where the JWT filter stores a verified token's payload in the request's metadata."""
DRY_RUN_ANNOTATION = "istio.io/dry-run"
DRY_RUN_STAT_PREFIX = MappingProxyType({"ALLOW": "istio_dry_run_allow_",
                                        "DENY": "istio_dry_run_deny_"})
"""Istio's stat prefixes for the shadow (dry-run) rules of ALLOW and DENY filters."""
LOCAL_TRUST_DOMAIN = "cluster.local"
"""In a principal, Istio reads this trust domain as "the mesh's own", whatever it is."""

RbacAction = Literal["ALLOW", "DENY", "AUDIT"]
_ENVOY_ACTION = MappingProxyType({"ALLOW": rbac_pb2.RBAC.ALLOW, "DENY": rbac_pb2.RBAC.DENY,
                                  "AUDIT": rbac_pb2.RBAC.LOG})
_ORDER: tuple[RbacAction, ...] = ("AUDIT", "DENY", "ALLOW")
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")
_BRACKETED = re.compile(r"^(\[[^\[\]]+\])+$")


class UnsupportedAuthorization(ValueError):
    """An AuthorizationPolicy (or part) that cannot be enforced as written. ``policy``
    and ``field`` (``rules[0].when[1]``) say where, for the caller's refusal."""

    def __init__(self, policy: PolicyRef, field: str, message: str) -> None:
        where = f"{policy} {field}".rstrip()
        super().__init__(f"{where}: {message}")
        self.policy = policy
        self.field = field


class _Bad(ValueError):
    """A value that cannot be translated; re-raised with the policy and field."""


def policy_name(namespace: str, name: str, index: int) -> str:
    """The RBAC policy of rule ``index`` of AuthorizationPolicy ``namespace/name``."""
    return f"ns[{namespace}]-policy[{name}]-rule[{index}]"


# --- string matching -------------------------------------------------------------------


def _re2(text: str) -> str:
    return _RE2_SPECIAL.sub(r"\\\1", text)


def _regex(pattern: str) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=pattern))


def _check_wildcard(value: str) -> None:
    inner = value[1:-1] if len(value) > 1 else ""
    if "*" in inner or value == "**":
        raise _Bad(f"{value!r}: '*' may only be the whole value, its first or its last "
                   "character")
    if not value:
        raise _Bad("an empty value matches nothing Istio can express")


def string_matcher(value: str, prefix: str = "", *, ignore_case: bool = False,
                   ) -> string_pb2.StringMatcher:
    """Istio's value forms: ``*`` (any non-empty), ``*suffix``, ``prefix*``, exact; with
    ``prefix`` (``spiffe://``) put before the value (a suffix form then needs a regex)."""
    _check_wildcard(value)
    if value == "*":
        return _regex(".+")
    if value.startswith("*"):
        if prefix:
            return _regex(_re2(prefix) + ".*" + _re2(value[1:]))
        return string_pb2.StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=prefix + value[:-1], ignore_case=ignore_case)
    return string_pb2.StringMatcher(exact=prefix + value, ignore_case=ignore_case)


def _header(name: str, value: str, *, ignore_case: bool = False) -> rc.HeaderMatcher:
    if value == "*":
        return rc.HeaderMatcher(name=name, present_match=True)
    return rc.HeaderMatcher(
        name=name, string_match=string_matcher(value, ignore_case=ignore_case))


def _cidr(value: str) -> address_pb2.CidrRange:
    try:
        block = ipaddress.ip_interface(value.strip())
    except ValueError:
        raise _Bad(f"{value!r} is not an IP address or CIDR block") from None
    return address_pb2.CidrRange(address_prefix=str(block.ip),
                                 prefix_len={"value": block.network.prefixlen})


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        raise _Bad(f"{value!r} is not a port number from 0 to 65535")
    return int(value)


# --- principals (who) ------------------------------------------------------------------

P = rbac_pb2.Principal
R = rbac_pb2.Permission


def _authenticated(matcher: string_pb2.StringMatcher) -> P:
    return P(authenticated=P.Authenticated(principal_name=matcher))


def _principal(value: str, trust_domain: str) -> P:
    """``td/ns/x/sa/y`` against the peer certificate's URI SAN ``spiffe://td/...``."""
    if value.startswith("spiffe://"):
        raise _Bad(f"{value!r}: write principals without spiffe:// "
                   "(cluster.local/ns/<namespace>/sa/<service-account>)")
    if value.startswith(LOCAL_TRUST_DOMAIN + "/"):
        value = trust_domain + value[len(LOCAL_TRUST_DOMAIN):]
    return _authenticated(string_matcher(value, "spiffe://"))


def _namespace(value: str) -> P:
    _check_wildcard(value)
    name = ".*".join(_re2(part) for part in value.split("*"))
    return _authenticated(_regex(f".*/ns/{name}/.*"))


def _service_account(value: str, home: str) -> P:
    """``<namespace>/<name>`` or ``<name>`` (in the policy's namespace), as Istio."""
    namespace, _, name = value.rpartition("/")
    if "*" in value or not name:
        raise _Bad(f"{value!r}: a service account is <name> or <namespace>/<name>, "
                   "without wildcards")
    namespace = namespace or home
    return _authenticated(
        _regex(f"spiffe://.+/ns/{_re2(namespace)}/(.+/|)sa/{_re2(name)}(/.+)?"))


def _jwt_claim(path: Sequence[str], matcher: value_pb2.ValueMatcher) -> P:
    """The request's dynamic metadata (``sourced_metadata``: ``Principal.metadata`` is
    deprecated in Envoy) at ``jwt_authn`` / ``payload`` / ``path``."""
    return P(sourced_metadata=rbac_pb2.SourcedMetadata(
        metadata_matcher=metadata_pb2.MetadataMatcher(
            filter=JWT_FILTER,
            path=[metadata_pb2.MetadataMatcher.PathSegment(key=k)
                  for k in (JWT_PAYLOAD, *path)],
            value=matcher,
        ),
        metadata_source=rbac_pb2.MetadataSource.DYNAMIC,
    ))


def _claim_string(claim: str, matcher: string_pb2.StringMatcher) -> P:
    return _jwt_claim((claim,), value_pb2.ValueMatcher(string_match=matcher))


def _request_principal(value: str) -> P:
    """``<iss>/<sub>`` (split at the last ``/``: issuers are URLs) against the verified
    token's ``iss`` and ``sub``, with Istio's reading of ``*`` on either side."""
    _check_wildcard(value)
    anything = _regex(".+")
    issuer, slash, subject = value.rpartition("/")
    if not slash:
        issuer, subject = value, ""
    if value == "*":
        iss, sub = anything, anything
    elif value.startswith("*"):
        if slash:
            iss = anything if issuer == "*" else string_pb2.StringMatcher(suffix=issuer[1:])
            sub = string_pb2.StringMatcher(exact=subject)
        else:
            iss, sub = anything, string_pb2.StringMatcher(suffix=value[1:])
    elif value.endswith("*"):
        if slash:
            iss = string_pb2.StringMatcher(exact=issuer)
            sub = anything if subject == "*" else string_pb2.StringMatcher(prefix=subject[:-1])
        else:
            iss, sub = string_pb2.StringMatcher(prefix=value[:-1]), anything
    else:
        iss, sub = string_pb2.StringMatcher(exact=issuer), string_pb2.StringMatcher(exact=subject)
    return P(and_ids=P.Set(ids=[_claim_string("iss", iss), _claim_string("sub", sub)]))


def _claim_values(path: Sequence[str], values: Sequence[str]) -> P:
    """A claim that may be a string or a list of strings (``aud``, ``groups``): it matches
    when it, or one of its items, matches one of ``values``."""
    each = [value_pb2.ValueMatcher(string_match=string_matcher(v)) for v in values]
    # Envoy wants two or more matchers in an OrMatcher
    strings = each[0] if len(each) == 1 else value_pb2.ValueMatcher(
        or_match=value_pb2.OrMatcher(value_matchers=each))
    either = value_pb2.OrMatcher(value_matchers=[
        value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=strings)),
        strings,
    ])
    return _jwt_claim(path, value_pb2.ValueMatcher(or_match=either))


# --- permissions (what) ----------------------------------------------------------------


def _path(value: str) -> R:
    """``url_path`` (the path without its query), or a ``{*}``/``{**}`` path template."""
    if "{*}" in value or "{**}" in value:
        template = value.replace("{**}", "**").replace("{*}", "*")
        config = uri_template_match_pb2.UriTemplateMatchConfig(path_template=template)
        return R(uri_template=extension_pb2.TypedExtensionConfig(
            name="uri-template", typed_config=pb.pack(config)))
    return R(url_path=path_pb2.PathMatcher(path=string_matcher(value)))


# --- conditions ------------------------------------------------------------------------

Side = Literal["principal", "permission"]
Build = Callable[[Sequence[str]], P | R]


@dataclass(frozen=True)
class _Condition:
    """One field of a rule: values ORed, not-values ORed then negated."""

    field: str
    side: Side
    values: tuple[str, ...]
    not_values: tuple[str, ...]
    build: Build
    http_only: bool = False

    def messages(self) -> list[P | R]:
        out: list[P | R] = []
        try:
            if self.values:
                out.append(self.build(self.values))
            if self.not_values:
                built = self.build(self.not_values)
                out.append(P(not_id=built) if self.side == "principal" else R(not_rule=built))
        except _Bad as exc:
            raise _Bad(f"{self.field}: {exc}") from None
        return out


def _any_principal(one: Callable[[str], P]) -> Build:
    return lambda values: P(or_ids=P.Set(ids=[one(v) for v in values]))


def _any_permission(one: Callable[[str], R]) -> Build:
    return lambda values: R(or_rules=R.Set(rules=[one(v) for v in values]))


def _condition(field: str, side: Side, values: Sequence[str] | None,
               not_values: Sequence[str] | None, build: Build, *, http_only: bool = False,
               ) -> list[_Condition]:
    if not values and not not_values:
        return []
    return [_Condition(field, side, tuple(values or ()), tuple(not_values or ()), build,
                       http_only)]


@dataclass(frozen=True)
class _Context:
    trust_domain: str
    home: str  # the policy's namespace


def _source_conditions(source: Source, at: str, ctx: _Context) -> list[_Condition]:
    principal = _any_principal(lambda v: _principal(v, ctx.trust_domain))
    return [
        *_condition(f"{at}.serviceAccounts", "principal", source.service_accounts,
                    source.not_service_accounts,
                    _any_principal(lambda v: _service_account(v, ctx.home))),
        *_condition(f"{at}.principals", "principal", source.principals, source.not_principals,
                    principal),
        *_condition(f"{at}.requestPrincipals", "principal", source.request_principals,
                    source.not_request_principals, _any_principal(_request_principal),
                    http_only=True),
        *_condition(f"{at}.namespaces", "principal", source.namespaces, source.not_namespaces,
                    _any_principal(_namespace)),
        *_condition(f"{at}.remoteIpBlocks", "principal", source.remote_ip_blocks,
                    source.not_remote_ip_blocks,
                    _any_principal(lambda v: P(remote_ip=_cidr(v)))),
        *_condition(f"{at}.ipBlocks", "principal", source.ip_blocks, source.not_ip_blocks,
                    _any_principal(lambda v: P(direct_remote_ip=_cidr(v)))),
    ]


def _operation_conditions(op: Operation, at: str) -> list[_Condition]:
    return [
        *_condition(f"{at}.hosts", "permission", op.hosts, op.not_hosts,
                    _any_permission(lambda v: R(header=_header(":authority", v,
                                                               ignore_case=True))),
                    http_only=True),
        *_condition(f"{at}.methods", "permission", op.methods, op.not_methods,
                    _any_permission(lambda v: R(header=_header(":method", v))), http_only=True),
        *_condition(f"{at}.paths", "permission", op.paths, op.not_paths,
                    _any_permission(_path), http_only=True),
        *_condition(f"{at}.ports", "permission", op.ports, op.not_ports,
                    _any_permission(lambda v: R(destination_port=_port(v)))),
    ]


_WhenKey = tuple[Side, Build, bool]


def _bracketed(key: str, prefix: str) -> list[str] | None:
    rest = key[len(prefix):]
    if not key.startswith(prefix) or not _BRACKETED.match(rest):
        return None
    return rest[1:-1].split("][")


def _when_key(key: str, ctx: _Context) -> _WhenKey:
    """How Istio reads a ``when`` key: which side of the policy it lands on, how its
    values match, and whether it is HTTP-only."""
    fixed: dict[str, _WhenKey] = {
        "source.ip": ("principal", _any_principal(lambda v: P(direct_remote_ip=_cidr(v))),
                      False),
        "remote.ip": ("principal", _any_principal(lambda v: P(remote_ip=_cidr(v))), False),
        "source.namespace": ("principal", _any_principal(_namespace), False),
        "source.principal": ("principal",
                             _any_principal(lambda v: _principal(v, ctx.trust_domain)), False),
        "request.auth.principal": ("principal", _any_principal(_request_principal), True),
        "request.auth.audiences": ("principal", lambda vs: _claim_values(("aud",), vs), True),
        "request.auth.presenter": ("principal", lambda vs: _claim_values(("azp",), vs), True),
        "destination.ip": ("permission",
                           _any_permission(lambda v: R(destination_ip=_cidr(v))), False),
        "destination.port": ("permission",
                             _any_permission(lambda v: R(destination_port=_port(v))), False),
        "connection.sni": ("permission", _any_permission(
            lambda v: R(requested_server_name=string_matcher(v))), False),
    }
    if key in fixed:
        return fixed[key]
    header = _bracketed(key, "request.headers")
    if header is not None and len(header) == 1:
        return ("principal", _any_principal(lambda v: P(header=_header(header[0], v))), True)
    claims = _bracketed(key, "request.auth.claims")
    if claims is not None:
        return ("principal", lambda vs: _claim_values(claims, vs), True)
    raise _Bad(f"key {key!r} is not a condition meshpilot translates; use one of "
               f"{', '.join(sorted(fixed))}, request.headers[<name>] or "
               "request.auth.claims[<claim>]")


def _when_conditions(conditions: Sequence[Condition], at: str, ctx: _Context,
                     ) -> list[_Condition]:
    out: list[_Condition] = []
    for i, condition in enumerate(conditions):
        field = f"{at}.when[{i}]"
        try:
            side, build, http_only = _when_key(condition.key, ctx)
        except _Bad as exc:
            raise _Bad(f"{field}: {exc}") from None
        out += _condition(field, side, condition.values, condition.not_values, build,
                          http_only=http_only)
    return out


# --- rules and policies ----------------------------------------------------------------


@dataclass(frozen=True)
class _Model:
    """A rule consolidated as Envoy reads it: one principal per ``from`` source and one
    permission per ``to`` operation, each the AND of its conditions (``when``
    conditions join every source or every operation, by the side they belong to)."""

    principals: tuple[tuple[_Condition, ...], ...]
    permissions: tuple[tuple[_Condition, ...], ...]


def _model(rule: Rule, at: str, ctx: _Context) -> _Model:
    when = _when_conditions(rule.when or [], at, ctx)
    who = tuple(c for c in when if c.side == "principal")
    what = tuple(c for c in when if c.side == "permission")
    return _Model(_sources(rule, at, ctx, who), _operations(rule, at, what))


def _sources(rule: Rule, at: str, ctx: _Context, who: tuple[_Condition, ...],
             ) -> tuple[tuple[_Condition, ...], ...]:
    found = [(*_source_conditions(f.source, f"{at}.from[{i}].source", ctx), *who)
             for i, f in enumerate(rule.from_ or [])]
    return tuple(found) or (who,)


def _operations(rule: Rule, at: str, what: tuple[_Condition, ...],
                ) -> tuple[tuple[_Condition, ...], ...]:
    found = [(*_operation_conditions(t.operation, f"{at}.to[{i}].operation"), *what)
             for i, t in enumerate(rule.to or [])]
    return tuple(found) or (what,)


def _and(conditions: Sequence[_Condition], side: Side, *, for_tcp: bool, action: RbacAction,
         ) -> P | R | None:
    """The AND of ``conditions``; None when the rule must be dropped (TCP, ALLOW, an
    HTTP-only field). On TCP, DENY and AUDIT ignore HTTP-only fields instead."""
    parts: list[P | R] = []
    for condition in conditions:
        if for_tcp and condition.http_only:
            if action == "ALLOW":
                return None
            continue
        parts += condition.messages()
    if side == "principal":
        return P(and_ids=P.Set(ids=parts or [P(any=True)]))  # type: ignore[list-item]
    return R(and_rules=R.Set(rules=parts or [R(any=True)]))  # type: ignore[list-item]


def _policy(model: _Model, *, for_tcp: bool, action: RbacAction) -> rbac_pb2.Policy | None:
    principals = [_and(c, "principal", for_tcp=for_tcp, action=action)
                  for c in model.principals]
    permissions = [_and(c, "permission", for_tcp=for_tcp, action=action)
                   for c in model.permissions]
    if None in principals or None in permissions:
        return None
    return rbac_pb2.Policy(principals=principals, permissions=permissions)  # type: ignore[arg-type]


def _match_nothing() -> rbac_pb2.Policy:
    """What a policy without rules contributes (Istio's rbacPolicyMatchNever)."""
    return rbac_pb2.Policy(permissions=[R(not_rule=R(any=True))],
                           principals=[P(not_id=P(any=True))])


def _dry_run(policy: AuthorizationPolicy) -> bool:
    value = policy.metadata.annotations.get(DRY_RUN_ANNOTATION)
    if value is None or value in _FALSE:
        return False
    if value in _TRUE:
        return True
    raise UnsupportedAuthorization(
        PolicyRef.of(policy), f"metadata.annotations[{DRY_RUN_ANNOTATION}]",
        f"{value!r} is not true or false")


def policy_rules(policy: AuthorizationPolicy, *, trust_domain: str, for_tcp: bool,
                 ) -> dict[str, rbac_pb2.Policy]:
    """The RBAC policies of one AuthorizationPolicy, by Istio's names. Raises
    :class:`UnsupportedAuthorization` for what cannot be translated."""
    ref = PolicyRef.of(policy)
    action: RbacAction = policy.spec.action  # type: ignore[assignment]
    if action == "CUSTOM":
        raise UnsupportedAuthorization(ref, "spec.action", "CUSTOM (an external "
                                       "authorizer) is not supported; use ALLOW or DENY")
    rules = policy.spec.rules or []
    home = policy.metadata.namespace
    if not rules:
        return {policy_name(home, policy.metadata.name, 0): _match_nothing()}
    ctx = _Context(trust_domain, home)
    out: dict[str, rbac_pb2.Policy] = {}
    for i, rule in enumerate(rules):
        try:
            built = _policy(_model(rule, f"rules[{i}]", ctx), for_tcp=for_tcp, action=action)
        except _Bad as exc:
            field, _, message = str(exc).partition(": ")
            raise UnsupportedAuthorization(ref, f"spec.{field}", message) from None
        if built is not None:
            out[policy_name(home, policy.metadata.name, i)] = built
    return out


@dataclass(frozen=True)
class RbacRules:
    """One action's RBAC config: ``enforced`` (None when every policy is a dry run) and
    ``shadow`` (the dry-run policies; None when there are none)."""

    enforced: rbac_pb2.RBAC | None
    shadow: rbac_pb2.RBAC | None


def rbac_rules(applied: Sequence[AppliedPolicy], action: RbacAction, *, trust_domain: str,
               for_tcp: bool) -> RbacRules | None:
    """The RBAC config of one action's policies; None when no policy has that action."""
    if not applied:
        return None
    enforced = rbac_pb2.RBAC(action=_ENVOY_ACTION[action])
    shadow = rbac_pb2.RBAC(action=_ENVOY_ACTION[action])
    has = {True: False, False: False}
    for item in applied:
        dry = _dry_run(item.policy)
        has[dry] = True
        target = shadow if dry else enforced
        for name, rules in policy_rules(item.policy, trust_domain=trust_domain,
                                        for_tcp=for_tcp).items():
            target.policies[name].CopyFrom(rules)
    return RbacRules(enforced if has[False] else None, shadow if has[True] else None)


def _groups(policies: WorkloadAuthorization) -> list[tuple[RbacAction, tuple[AppliedPolicy, ...]]]:
    if policies.custom:
        ref = policies.custom[0].ref
        raise UnsupportedAuthorization(ref, "spec.action", "CUSTOM (an external authorizer) "
                                       "is not supported; use ALLOW or DENY")
    return [(action, policies.with_action(action)) for action in _ORDER]


def http_rbac_filters(policies: WorkloadAuthorization, trust_domain: str,
                      ) -> list[hcm.HttpFilter]:
    """The RBAC HTTP filters for a workload's inbound connection manager, to go before
    the router (and after the JWT filter): AUDIT (LOG), DENY, ALLOW, each present only
    when a policy of that action applies. An empty list means no policy applies: every
    request is allowed."""
    out: list[hcm.HttpFilter] = []
    for action, applied in _groups(policies):
        built = rbac_rules(applied, action, trust_domain=trust_domain, for_tcp=False)
        if built is None:
            continue
        config = http_rbac.RBAC()
        if built.enforced is not None:
            config.rules.CopyFrom(built.enforced)
        if built.shadow is not None:
            config.shadow_rules.CopyFrom(built.shadow)
            config.shadow_rules_stat_prefix = DRY_RUN_STAT_PREFIX.get(action, "")
        out.append(hcm.HttpFilter(name=HTTP_RBAC_FILTER, typed_config=pb.pack(config)))
    return out


def network_rbac_filters(policies: WorkloadAuthorization, trust_domain: str, *,
                         stat_prefix: str = TCP_STAT_PREFIX) -> list[lc.Filter]:
    """The RBAC network filters for a workload's inbound TCP chain, to go before
    tcp_proxy; same order and presence as :func:`http_rbac_filters`, with Istio's TCP
    reading of HTTP-only fields (see the module's docstring)."""
    out: list[lc.Filter] = []
    for action, applied in _groups(policies):
        built = rbac_rules(applied, action, trust_domain=trust_domain, for_tcp=True)
        if built is None:
            continue
        config = network_rbac.RBAC(stat_prefix=stat_prefix)
        if built.enforced is not None:
            config.rules.CopyFrom(built.enforced)
        if built.shadow is not None:
            config.shadow_rules.CopyFrom(built.shadow)
            config.shadow_rules_stat_prefix = DRY_RUN_STAT_PREFIX.get(action, "")
        out.append(lc.Filter(name=NETWORK_RBAC_FILTER, typed_config=pb.pack(config)))
    return out


def deny_all_http() -> hcm.HttpFilter:
    """An RBAC filter allowing nothing: what stands in for policies that cannot be
    enforced as written (fail closed, never a silent allow)."""
    config = http_rbac.RBAC(rules=rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW))
    return hcm.HttpFilter(name=HTTP_RBAC_FILTER, typed_config=pb.pack(config))


def deny_all_network(stat_prefix: str = TCP_STAT_PREFIX) -> lc.Filter:
    """:func:`deny_all_http` for a TCP chain."""
    config = network_rbac.RBAC(stat_prefix=stat_prefix,
                               rules=rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW))
    return lc.Filter(name=NETWORK_RBAC_FILTER, typed_config=pb.pack(config))
