"""The push sequence: how each resource type moves in an update, as one table.

An update goes through three phases (xds_protocol.rst, "Eventual consistency
considerations"): **make** what will be pointed at (secrets, clusters, their endpoints), **switch**
what points (listeners, routes), then **break**: remove what nothing points at any more.
:data:`PUSH_SEQUENCE` says, per type, in push order:

- ``phase``: the phase that stages the type's new resources;
- ``keeps_stale``: whether names leaving the config stay until **break** (something staged
  earlier may still name them) or go at once;
- ``named_by``: the types whose resources name this type's, and how to read those names.
  Envoy asks for such a resource only once something names it (EDS for a cluster, RDS
  for a listener or scope), so an update waits only for the named ones, and a consistent
  config has every named one;
- ``resent_with``: a resource sent again when the one naming it changed (a re-created
  cluster warms on its endpoints again);
- ``subscribed_by``: types whose resources make Envoy subscribe to this one at all,
  without naming its resources (a listener with scoped routes subscribes to all scopes);
- ``may_lack``: names the config may name without holding them: a user's credential
  (``kubernetes://...``) whose Secret is not there yet. Envoy fails the connections of
  a cluster whose secret never comes, closed (as with Istio), and the rest of the proxy's
  config must not wait on a Secret the user has yet to apply;
- ``staged_empty``: whether a new stream gets the type staged even when its config has
  none, so that the proxy's first request for it is answered (Envoy asks for clusters
  and listeners whatever its config; scoped routes only when a listener has them, and
  then they are in the config).

Adding a type is one line here (and its URL in :mod:`meshpilot.xds.types`).

Extension configs (ECDS) come after the listener that names them, as route
configurations do: Envoy asks for one only once it holds a listener naming it (and keeps
the listener warming until it has it), and gets it at once from the config staged then.

Scoped routes (SRDS) come after the listener whose connection manager fetches them and
before the route configurations they name; both are staged in one phase, because Envoy
asks for a scope's RouteConfiguration only once it holds the scope, and gets it at once
from the config staged then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from google.protobuf.message import Message

from meshpilot.xds.references import (
    cluster_secret_names,
    ecds_names,
    eds_names,
    listener_secret_names,
    rds_names,
    scope_route_names,
)
from meshpilot.xds.translate.client_credentials import is_credential
from meshpilot.xds.types import (
    CLUSTER,
    ENDPOINT,
    EXTENSION_CONFIG,
    LISTENER,
    ROUTE,
    SCOPED_ROUTE,
    SECRET,
)

Phase = Literal["make", "switch"]
NameReader = Callable[[Message], Iterable[str]]


@dataclass(frozen=True)
class TypeRule:
    """How one resource type moves in an update (see the module docstring)."""

    type_url: str
    phase: Phase
    keeps_stale: bool
    named_by: tuple[tuple[str, NameReader], ...] = field(default=())
    resent_with: str | None = None
    subscribed_by: tuple[str, ...] = ()
    staged_empty: bool = True
    may_lack: Callable[[str], bool] | None = None

    @property
    def asked_through(self) -> tuple[str, ...]:
        """The types without which the proxy would not ask for this one."""
        return (*(t for t, _ in self.named_by), *self.subscribed_by)


PUSH_SEQUENCE: tuple[TypeRule, ...] = (
    TypeRule(SECRET, "make", keeps_stale=True, staged_empty=False,
             named_by=((CLUSTER, cluster_secret_names), (LISTENER, listener_secret_names)),
             may_lack=is_credential),
    TypeRule(CLUSTER, "make", keeps_stale=True),
    TypeRule(ENDPOINT, "make", keeps_stale=True, named_by=((CLUSTER, eds_names),),
             resent_with=CLUSTER),
    TypeRule(LISTENER, "switch", keeps_stale=False),
    TypeRule(EXTENSION_CONFIG, "switch", keeps_stale=True, staged_empty=False,
             named_by=((LISTENER, ecds_names),)),
    TypeRule(SCOPED_ROUTE, "switch", keeps_stale=True, subscribed_by=(LISTENER,),
             staged_empty=False),
    TypeRule(ROUTE, "switch", keeps_stale=True,
             named_by=((LISTENER, rds_names), (SCOPED_ROUTE, scope_route_names))),
)

PHASES: tuple[Phase, ...] = ("make", "switch")
"""The staging phases in order; **break** follows them."""

RULES: MappingProxyType[str, TypeRule] = MappingProxyType(
    {rule.type_url: rule for rule in PUSH_SEQUENCE})

OTHER_TYPE = TypeRule("", "switch", keeps_stale=False)
"""A type the table does not know: staged whole with the listeners, as they are."""

ORDER: tuple[str, ...] = tuple(rule.type_url for rule in PUSH_SEQUENCE)
"""Every known type, in push order."""

_RANK: MappingProxyType[str, int] = MappingProxyType({t: i for i, t in enumerate(ORDER)})


def rule_for(type_url: str) -> TypeRule:
    return RULES.get(type_url, OTHER_TYPE)


def order_key(type_url: str) -> int:
    """Sort key putting known types in push order and any other type after them."""
    return _RANK.get(type_url, len(ORDER))


def sorted_types(type_urls: Iterable[str]) -> list[str]:
    return sorted(type_urls, key=order_key)

