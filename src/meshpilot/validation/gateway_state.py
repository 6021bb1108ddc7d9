"""Gateway checks across objects, on the state after the whole change (Istio's
``istioctl analyze`` IST0161, InvalidGatewayCredential, and a passthrough check).

- A terminating server's ``credentialName`` is read from the gateway workload's own
  namespace, which for meshpilot's ingress gateway is ``istio-system``: no such Secret is
  a warning (MP2010; the server's hosts are not served until it exists, so it may come
  later), a Secret that cannot serve is an error (MP1003): not ``kubernetes.io/tls``
  (the type whose certificate and key are checked as one pair at apply), or, for MUTUAL
  and OPTIONAL_MUTUAL, without the ``ca.crt`` client certificates are verified against.
  It is reported on the Gateway when the Gateway is part of the change, else on the
  Secret whose change breaks it.
- A PASSTHROUGH server forwards by the SNI of VirtualService ``tls`` routes bound to its
  Gateway: with none for its hosts it serves nothing (MP2011).
- A TCP server (TCP, MONGO, REDIS, MYSQL), or a TLS-terminating server on a TLS port,
  forwards by a VirtualService ``tcp`` route bound to its Gateway whose hosts meet the
  server's: with none it serves nothing (MP2013).

No message repeats a Secret's values; only its type and the names of its keys are read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from meshpilot.api.hosts import host_matches
from meshpilot.validation import codes
from meshpilot.validation.finding import Path
from meshpilot.validation.gateway_rules import (
    TCP_PROTOCOLS,
    TERMINATING_MODES,
    TLS_PROTOCOLS,
    tls_mode,
)
from meshpilot.validation.shapes import as_list, as_mapping
from meshpilot.validation.state_object import Findings, StateObject

GATEWAY_NAMESPACE = "istio-system"
"""Where meshpilot's ingress gateway runs: the namespace its credentials are read from."""
TLS_SECRET = "kubernetes.io/tls"

Report = Callable[[StateObject], bool]
"""Whether findings about an object are wanted (changed, or every object for describe)."""
_Server = tuple[int, Mapping[str, Any], Mapping[str, Any]]  # (index, server, its tls)


def check_gateways(objects: list[StateObject], report: Report, found: Findings) -> None:
    gateways = [o for o in objects if o.key.kind == "Gateway"]
    if not gateways:
        return
    secrets = {(o.namespace, o.key.name): o for o in objects
               if o.key.kind == "Secret" and not o.key.group}
    routes = [o for o in objects if o.key.kind == "VirtualService" and o.spec.get("tls")]
    tcp_routes = [o for o in objects if o.key.kind == "VirtualService" and o.spec.get("tcp")]
    for gateway in gateways:
        if report(gateway):
            _tcp_servers_routed(gateway, tcp_routes, found)
        _tls_servers_served(gateway, secrets, routes, report, found)


def _tls_servers_served(gateway: StateObject, secrets: Mapping[tuple[str, str], StateObject],
                        routes: list[StateObject], report: Report, found: Findings) -> None:
    for i, server, tls in _tls_servers(gateway):
        mode = tls_mode(tls)
        name = tls.get("credentialName")
        if mode in TERMINATING_MODES and isinstance(name, str) and name:
            _credential(gateway, i, name, mode, secrets, report, found)
        elif mode == "PASSTHROUGH" and report(gateway) and \
                not _passthrough_routed(gateway, server, routes):
            found.add(codes.PASSTHROUGH_NO_ROUTE, gateway, ("spec", "servers", i, "tls"),
                      "PASSTHROUGH forwards connections by the SNI of VirtualService tls "
                      "routes bound to this Gateway, and none has sniHosts among the "
                      "server's hosts: the server serves nothing until one does")


def _tcp_servers_routed(gateway: StateObject, routes: list[StateObject], found: Findings
                        ) -> None:
    for i, item in enumerate(as_list(gateway.spec.get("servers"))):
        server = as_mapping(item)
        port = as_mapping(server.get("port"))
        protocol = str(port.get("protocol") or "").upper()
        terminating = protocol == "TLS" and tls_mode(as_mapping(server.get("tls"))) \
            in TERMINATING_MODES
        if protocol not in TCP_PROTOCOLS and not terminating:
            continue
        if not any(_binds(vs, gateway) and _hosts_meet(vs, gateway, server)
                   for vs in routes):
            found.add(codes.TCP_SERVER_NO_ROUTE, gateway, ("spec", "servers", i),
                      f"a {protocol} server forwards connections by a VirtualService tcp "
                      "route bound to this Gateway whose hosts meet the server's, and none "
                      "is: the server serves nothing until one is (Istio's tcp-echo: "
                      "hosts: ['*'], gateways: [this gateway], tcp: [route: ...])")


def _hosts_meet(vs: StateObject, gateway: StateObject, server: Mapping[str, Any]) -> bool:
    hosts = [_split(str(h), gateway.namespace) for h in as_list(server.get("hosts"))]
    return any(ns in ("*", vs.namespace) and (host_matches(host, str(h)) or
                                              host_matches(str(h), host))
               for h in as_list(vs.spec.get("hosts")) for ns, host in hosts)


def _tls_servers(gateway: StateObject) -> Iterator[_Server]:
    for i, item in enumerate(as_list(gateway.spec.get("servers"))):
        server = as_mapping(item)
        protocol = str(as_mapping(server.get("port")).get("protocol") or "").upper()
        tls = server.get("tls")
        if protocol in TLS_PROTOCOLS and isinstance(tls, Mapping):
            yield i, server, tls


def _credential(gateway: StateObject, i: int, name: str, mode: str,
                secrets: Mapping[tuple[str, str], StateObject], report: Report,
                found: Findings) -> None:
    path: Path = ("spec", "servers", i, "tls", "credentialName")
    secret = secrets.get((GATEWAY_NAMESPACE, name))
    if secret is None:
        if report(gateway):
            found.add(codes.GATEWAY_NO_CREDENTIAL, gateway, path,
                      f"no Secret {GATEWAY_NAMESPACE}/{name}: the gateway reads credentialName "
                      f"from its own namespace ({GATEWAY_NAMESPACE}), so the server's hosts are "
                      "not served until it exists (kubectl create -n istio-system secret tls "
                      f"{name} --cert=CERT --key=KEY)")
        return
    problem = _unusable(secret.body, mode)
    if problem is None:
        return
    secret_path, why = problem
    label = f"Secret {GATEWAY_NAMESPACE}/{name}"
    if report(gateway):
        found.add(codes.GATEWAY_BAD_CREDENTIAL, gateway, path, f"{label} {why}")
    elif report(secret):
        found.add(codes.GATEWAY_BAD_CREDENTIAL, secret, secret_path,
                  f"Gateway {gateway.namespace}/{gateway.key.name} serves spec.servers[{i}] "
                  f"with this Secret, which {why}")


def _unusable(body: Mapping[str, Any], mode: str) -> tuple[Path, str] | None:
    """(where in the Secret, what is wrong) when it cannot serve a ``mode`` server."""
    kind = body.get("type") or "Opaque"
    if kind != TLS_SECRET:
        return ("type",), (f"is of type {kind}; a gateway certificate is a {TLS_SECRET} Secret "
                           "(tls.crt and tls.key, checked as one pair at apply; and ca.crt "
                           "for MUTUAL)")
    keys = {*as_mapping(body.get("data")), *as_mapping(body.get("stringData"))}
    if mode != "SIMPLE" and "ca.crt" not in keys:
        return ("data",), (f"has no ca.crt, which {mode} verifies client certificates "
                           "against")
    return None


def _passthrough_routed(gateway: StateObject, server: Mapping[str, Any],
                        routes: list[StateObject]) -> bool:
    """Whether a VirtualService bound to the Gateway has a tls route match whose
    sniHosts meet the server's hosts."""
    hosts = [_split(str(h), gateway.namespace) for h in as_list(server.get("hosts"))]
    for vs in routes:
        if not _binds(vs, gateway):
            continue
        for route in as_list(vs.spec.get("tls")):
            for match in as_list(as_mapping(route).get("match")):
                for sni in as_list(as_mapping(match).get("sniHosts")):
                    if any(ns in ("*", vs.namespace) and (host_matches(host, str(sni)) or
                                                          host_matches(str(sni), host))
                           for ns, host in hosts):
                        return True
    return False


def _split(entry: str, gateway_ns: str) -> tuple[str, str]:
    """A server host as (namespace filter, host): ``*`` any, ``.`` the Gateway's own."""
    ns, _, host = entry.rpartition("/")
    return ("*" if not ns else gateway_ns if ns == "." else ns), host


def _binds(vs: StateObject, gateway: StateObject) -> bool:
    for ref in as_list(vs.spec.get("gateways")):
        ns, _, name = str(ref).rpartition("/")
        if (ns or vs.namespace, name) == (gateway.namespace, gateway.key.name):
            return True
    return False
