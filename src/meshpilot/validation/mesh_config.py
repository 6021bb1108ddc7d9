"""Reading a meshConfig file into :class:`~meshpilot.api.mesh_config.MeshConfig`.

The file is checked as strictly as an applied object, because a control plane must not
start on a mesh config it would have to guess at: a field neither Istio's meshConfig nor
meshpilot knows is refused with the valid ones listed (MP0080); one Istio defines and
meshpilot does not act on is accepted with a warning naming it (MP2051), never dropped in
silence, unless leaving it out would send traffic past a control it asks for (refused,
MP0082); a bad value names the valid ones (MP0081); a file that is not one YAML object is
MP0079. Every finding carries the file, line and field path.
"""

from __future__ import annotations

import difflib
import ipaddress
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from meshpilot.api.loader import LoadedDocument, LoadError, load_text
from meshpilot.api.mesh_config import OUTBOUND_MODES, DnsResolver, MeshConfig, OutboundMode
from meshpilot.validation.codes import (
    MESH_CONFIG_FIELD,
    MESH_CONFIG_FILE,
    MESH_CONFIG_IGNORED,
    MESH_CONFIG_REFUSED,
    MESH_CONFIG_VALUE,
    Code,
)
from meshpilot.validation.diagnostics import Diagnostic, format_path, has_errors
from meshpilot.validation.mesh_networks import parse_mesh_networks, with_local_network

SUBJECT = "meshConfig"
MAX_RESOLVERS = 8

KNOWN: MappingProxyType[tuple[str, ...], tuple[str, ...]] = MappingProxyType({
    (): ("outboundTrafficPolicy", "dnsResolvers", "meshNetworks"),
    ("outboundTrafficPolicy",): ("mode",),
})
"""Fields meshpilot acts on, per object path."""

ISTIO_NOT_APPLIED = frozenset({
    "accessLogFile", "accessLogEncoding", "accessLogFormat", "defaultConfig",
    "enableTracing", "enableAutoMtls", "extensionProviders", "defaultProviders",
    "ingressClass", "ingressService", "ingressControllerMode", "ingressSelector",
    "trustDomain", "trustDomainAliases", "rootNamespace", "localityLbSetting",
    "dnsRefreshRate", "connectTimeout", "protocolDetectionTimeout",
    "defaultServiceExportTo", "defaultVirtualServiceExportTo",
    "defaultDestinationRuleExportTo", "outboundClusterStatName", "inboundClusterStatName",
    "h2UpgradePolicy", "enablePrometheusMerge", "discoverySelectors", "tcpKeepalive",
    "caCertificates", "certificates", "serviceSettings", "meshMTLS", "tlsDefaults",
    "verifyCertificateAtClient", "defaultHttpRetryPolicy", "proxyHttpPort",
    "proxyListenPort", "proxyInboundListenPort",
})
"""Istio meshConfig fields meshpilot accepts and does not act on (warned: MP2051)."""

REFUSED = MappingProxyType({
    "outboundTrafficPolicy.egressProxy": (
        "egressProxy is refused: Istio would send the traffic for hosts outside the "
        "registry through that proxy; meshpilot sends it straight to the host it names, "
        "past the proxy meant to control it; remove it (and use REGISTRY_ONLY with "
        "ServiceEntries to control egress)"),
})
"""Istio fields that cannot be left out without weakening a control (MP0082)."""

_WHERE_INSTEAD = MappingProxyType({
    "trustDomain": "; the trust domain is `up --trust-domain`",
})


class MeshConfigError(Exception):
    """A mesh config file with errors; ``diagnostics`` say where and why."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("\n".join(d.format() for d in diagnostics))
        self.diagnostics = diagnostics


class _Reader:
    """Collects findings about one document, each placed at its field's line."""

    def __init__(self, doc: LoadedDocument) -> None:
        self.doc = doc
        self.found: list[Diagnostic] = []

    def say(self, code: Code, path: tuple[str | int, ...], message: str) -> None:
        pos = self.doc.position_of(path)
        self.found.append(Diagnostic.of(code, message, file=self.doc.file, line=pos.line,
                                        column=pos.column, path=format_path(path),
                                        object=SUBJECT))

    def fields(self, data: dict[str, Any], path: tuple[str, ...]) -> None:
        valid = KNOWN[path]
        for key in data:
            name = str(key)
            dotted = ".".join((*path, name))
            if name in valid:
                continue
            if dotted in REFUSED:
                self.say(MESH_CONFIG_REFUSED, (*path, name), REFUSED[dotted])
                continue
            if dotted in ISTIO_NOT_APPLIED:
                self.say(MESH_CONFIG_IGNORED, (*path, name),
                         f"'{name}' is an Istio meshConfig field meshpilot does not act on: "
                         f"it has no effect here{_WHERE_INSTEAD.get(dotted, '')}")
                continue
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            if name == "meshConfig":
                hint = " (write meshConfig's fields at the top of the file, not under it)"
            self.say(MESH_CONFIG_FIELD, (*path, name),
                     f"unknown field '{name}'{hint}; valid fields here: {', '.join(valid)}")


def _mode(reader: _Reader, data: dict[str, Any]) -> OutboundMode | None:
    policy = data.get("outboundTrafficPolicy")
    if policy is None:
        return None
    path = ("outboundTrafficPolicy",)
    if not isinstance(policy, dict):
        reader.say(MESH_CONFIG_VALUE, path, "outboundTrafficPolicy must be an object: "
                   "{mode: ALLOW_ANY} or {mode: REGISTRY_ONLY}")
        return None
    reader.fields(policy, path)
    mode = policy.get("mode")
    for valid in OUTBOUND_MODES:
        if mode == valid:
            return valid
    if mode is not None:
        reader.say(MESH_CONFIG_VALUE, (*path, "mode"),
                   f"invalid mode {mode!r}; valid values: {', '.join(OUTBOUND_MODES)}")
    return None


def parse_resolver(text: str) -> DnsResolver:
    """``IP`` or ``IP:port`` (``[IPv6]:port``); ValueError saying what is wrong."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError("write [IPv6]:port")
            port = _port(rest[1:])
    elif text.count(":") == 1:
        host, _, given = text.partition(":")
        port = _port(given)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address (a resolver is given by address, "
                         "e.g. 127.0.0.1:5353)") from None
    return DnsResolver(str(address), port)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"port {text!r} is not 1-65535")
    return int(text)


def _resolvers(reader: _Reader, data: dict[str, Any]) -> tuple[DnsResolver, ...]:
    given = data.get("dnsResolvers")
    if given is None:
        return ()
    if not isinstance(given, list) or not given or len(given) > MAX_RESOLVERS:
        reader.say(MESH_CONFIG_VALUE, ("dnsResolvers",),
                   f"dnsResolvers must be a list of 1 to {MAX_RESOLVERS} addresses, "
                   "e.g. ['127.0.0.1:5353', '[::1]:53']")
        return ()
    out = []
    for i, item in enumerate(given):
        try:
            out.append(parse_resolver(str(item) if isinstance(item, str) else ""))
        except ValueError as exc:
            reader.say(MESH_CONFIG_VALUE, ("dnsResolvers", i),
                       f"invalid resolver {item!r}: {exc}")
    return tuple(out)


def parse_mesh_config(text: str, file: str, network: str = ""
                      ) -> tuple[MeshConfig, list[Diagnostic]]:
    """The settings of one meshConfig document, and every warning about it. Raises
    :class:`MeshConfigError` when there is an error. ``network`` is the control-plane
    host's network (``up --network``), checked against ``meshNetworks`` when it is set
    (without it the mesh is one network, and the name routes nothing)."""
    try:
        docs = load_text(text, file)
    except LoadError as exc:
        where = {"file": exc.file, "line": exc.line, "column": exc.column}
        raise MeshConfigError([Diagnostic.of(MESH_CONFIG_FILE, exc.message, **where)]) from None
    if not docs:
        return MeshConfig(), []
    if len(docs) > 1 or not isinstance(docs[0].data, dict):
        doc = docs[-1] if len(docs) > 1 else docs[0]
        raise MeshConfigError([Diagnostic.of(
            MESH_CONFIG_FILE, "a mesh config is one YAML object of meshConfig's fields, "
            "e.g. 'outboundTrafficPolicy: {mode: REGISTRY_ONLY}'", file=file, line=doc.line)])
    reader = _Reader(docs[0])
    data: dict[str, Any] = docs[0].data
    reader.fields(data, ())
    mode = _mode(reader, data)
    resolvers = _resolvers(reader, data)
    networks = parse_mesh_networks(reader.say, data["meshNetworks"]) \
        if "meshNetworks" in data else None
    if networks and network:
        networks = with_local_network(reader.say, data["meshNetworks"], networks, network)
    if has_errors(reader.found):
        raise MeshConfigError(reader.found)
    config = MeshConfig(outbound_mode=mode or "ALLOW_ANY", dns_resolvers=resolvers)
    if networks:
        config = replace(config, networks=networks)
    return config, reader.found


def read_mesh_config(path: Path, network: str = "") -> tuple[MeshConfig, list[Diagnostic]]:
    """:func:`parse_mesh_config` of a file (an unreadable file is an MP0079 error)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MeshConfigError([Diagnostic.of(MESH_CONFIG_FILE, f"cannot read: {exc}",
                                             file=str(path))]) from None
    return parse_mesh_config(text, str(path), network)
