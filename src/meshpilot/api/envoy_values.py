"""Envoy v3 API values as an EnvoyFilter writes them: JSON or YAML parsed into protobuf.

A patch ``value`` is the JSON form of an Envoy message (a Cluster, an HttpFilter, a
Route, ...): field names snake_case or camelCase, durations as ``"1s"``, ``Any`` fields
as objects with an ``@type``. protobuf's ``json_format`` parses that, provided the
message types an ``@type`` names are loaded; they are found by their package (the Python
modules of ``envoy.extensions.filters.http.local_ratelimit.v3`` hold
``...local_ratelimit.v3.LocalRateLimit``) and imported on first use, so any type the
installed Envoy API protos define can be written, not a fixed list.

``TypedStruct`` (``udpa.type.v1`` or ``xds.type.v3``), which Istio's own tasks use to
give a filter's config without its proto, is unwrapped into the typed message it
stands for: the config pushed to Envoy is then the same either way, and a wrong field
in it is refused here, at apply, rather than by Envoy.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from google.protobuf import json_format, symbol_database
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

TYPED_STRUCTS = frozenset({
    "udpa.type.v1.TypedStruct",
    "xds.type.v3.TypedStruct",
})
_PREFIX = "type.googleapis.com/"


VALUE_TYPES: Mapping[str, type[Message]] = MappingProxyType({
    "LISTENER": listener_pb2.Listener,
    "FILTER_CHAIN": listener_components_pb2.FilterChain,
    "NETWORK_FILTER": listener_components_pb2.Filter,
    "HTTP_FILTER": http_connection_manager_pb2.HttpFilter,
    "ROUTE_CONFIGURATION": route_pb2.RouteConfiguration,
    "VIRTUAL_HOST": route_components_pb2.VirtualHost,
    "HTTP_ROUTE": route_components_pb2.Route,
    "CLUSTER": cluster_pb2.Cluster,
})
"""The Envoy message a patch value is, per EnvoyFilter ``applyTo`` meshpilot applies."""


def value_type(apply_to: str) -> type[Message]:
    return VALUE_TYPES[apply_to]


class EnvoyValueError(ValueError):
    """A value that is not the JSON of the Envoy message it must be; says why."""


def type_name(type_url: str) -> str:
    """``type.googleapis.com/a.b.C`` → ``a.b.C`` (any host part is dropped)."""
    return type_url.rpartition("/")[2]


PROTO_ROOTS = ("envoy.", "udpa.", "xds.", "google.protobuf.")
"""The packages an ``@type`` may name: the Envoy API's protos (and the well-known
types). A type name is user input: nothing outside these is ever imported for it."""
_PACKAGE = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*")


def load_type(name: str) -> bool:
    """Import the ``_pb2`` modules of ``name``'s package (one of :data:`PROTO_ROOTS`) so
    the default descriptor pool knows the type; whether it is known now."""
    database = symbol_database.Default()
    try:
        database.GetSymbol(name)
        return True
    except KeyError:
        pass
    package = name.rpartition(".")[0]
    if not package.startswith(PROTO_ROOTS) or not _PACKAGE.fullmatch(package):
        return False
    try:
        module = importlib.import_module(package)
    except ImportError:
        return False
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")
    try:
        database.GetSymbol(name)
        return True
    except KeyError:
        return False


def _unwrapped(value: Any, where: str) -> Any:
    """``value`` with every TypedStruct replaced by the typed object it stands for, and
    every ``@type`` it names loaded (refused when no installed proto defines it)."""
    if isinstance(value, list):
        return [_unwrapped(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, Mapping):
        return value
    out = {str(k): _unwrapped(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    url = out.get("@type")
    if not isinstance(url, str):
        return out
    if type_name(url) in TYPED_STRUCTS:
        inner = out.get("type_url", out.get("typeUrl"))
        if not isinstance(inner, str) or not inner:
            raise EnvoyValueError(f"{where or 'value'}: a TypedStruct needs type_url, the "
                                  "type of the config it holds")
        body = out.get("value") or {}
        if not isinstance(body, Mapping):
            raise EnvoyValueError(f"{where or 'value'}.value: a TypedStruct's value is an "
                                  "object")
        out = {"@type": inner if "/" in inner else _PREFIX + inner, **body}
        url = out["@type"]
    if not load_type(type_name(url)):
        raise EnvoyValueError(f"{where + '.' if where else ''}@type: {url!r} is not a type "
                              "of the Envoy v3 API (write type.googleapis.com/ and the "
                              "message's full name, e.g. type.googleapis.com/envoy."
                              "extensions.filters.http.local_ratelimit.v3.LocalRateLimit)")
    return out


def parse_value(value: Mapping[str, Any], kind: type[M]) -> M:
    """``value`` as a ``kind`` message; EnvoyValueError naming the field that is wrong."""
    try:
        plain = _unwrapped(value, "")
        return json_format.ParseDict(plain, kind())
    except json_format.ParseError as exc:
        raise EnvoyValueError(f"not a valid {kind.DESCRIPTOR.full_name}: {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, EnvoyValueError):
            raise
        raise EnvoyValueError(f"not a valid {kind.DESCRIPTOR.full_name}: {exc}") from None
