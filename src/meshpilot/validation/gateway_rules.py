"""Gateway rules beyond its model: the TLS of a server that the ingress gateway could not
serve as written. The xDS translation leaves such a server out (and says so to the
control plane's log); refusing it at apply tells the person who wrote it, instead.

- MP0037: ISTIO_MUTUAL and AUTO_PASSTHROUGH serve multi-cluster (east-west) gateways,
  which meshpilot does not run.
- MP0011, as Istio's own validation: an HTTPS or TLS server needs ``tls``; a terminating
  mode needs ``credentialName``, or ``serverCertificate`` and ``privateKey``; MUTUAL and
  OPTIONAL_MUTUAL with files need ``caCertificates``.
- MP0038, valid in Istio but not served here: several certificates on one server
  (``credentialNames``, ``tlsCertificates``), certificate files given beside
  ``credentialName``.
- MP0045: a UDP server; Envoy's gateway proxies no UDP (nor does Istio's).

Whether the Secret a ``credentialName`` names exists and can serve is a question about
two objects: see :mod:`meshpilot.validation.gateway_state`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from meshpilot.validation import codes
from meshpilot.validation.finding import Finding, Path
from meshpilot.validation.shapes import as_list, as_mapping

TLS_PROTOCOLS = ("HTTPS", "TLS")
TCP_PROTOCOLS = ("TCP", "MONGO", "REDIS", "MYSQL")
TERMINATING_MODES = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")
MULTI_CLUSTER_MODES = ("ISTIO_MUTUAL", "AUTO_PASSTHROUGH")


def tls_mode(tls: Mapping[str, Any]) -> str:
    """A server's TLS mode: PASSTHROUGH when not given (Istio's enum default)."""
    mode = tls.get("mode")
    return mode if isinstance(mode, str) and mode else "PASSTHROUGH"


def gateway_findings(body: Mapping[str, Any]) -> list[Finding]:
    spec = as_mapping(body.get("spec"))
    found: list[Finding] = []
    for i, server in enumerate(as_list(spec.get("servers"))):
        found.extend(_server_findings(as_mapping(server), ("spec", "servers", i)))
    return found


def _server_findings(server: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    protocol = str(as_mapping(server.get("port")).get("protocol") or "").upper()
    if protocol == "UDP":
        yield Finding(codes.GATEWAY_PROTOCOL, (*path, "port", "protocol"),
                      "the gateway proxies no UDP (nor does Istio's): nothing would listen; "
                      "use TCP, TLS, HTTP, HTTPS, HTTP2 or GRPC")
        return
    if protocol not in TLS_PROTOCOLS:
        return
    tls = server.get("tls")
    if not isinstance(tls, Mapping):
        yield Finding(codes.MISSING_FIELD, (*path, "tls"),
                      f"a {protocol} server needs tls: a mode (SIMPLE, MUTUAL, PASSTHROUGH, "
                      "...) and, to terminate TLS, the certificate to present")
        return
    mode = tls_mode(tls)
    where = (*path, "tls")
    if mode in MULTI_CLUSTER_MODES:
        yield Finding(codes.GATEWAY_MULTI_CLUSTER, (*where, "mode"),
                      f"mode {mode} serves multi-cluster (east-west) gateways, which meshpilot "
                      "does not run, so the server would serve nothing; use SIMPLE or MUTUAL "
                      "to terminate TLS, or PASSTHROUGH to route it by SNI")
        return
    if mode not in TERMINATING_MODES:
        return
    yield from _certificate(tls, where, mode)


def _certificate(tls: Mapping[str, Any], where: Path, mode: str) -> Iterator[Finding]:
    several = [f for f in ("credentialNames", "tlsCertificates") if tls.get(f)]
    if several:
        yield Finding(codes.GATEWAY_TLS_UNSERVED, (*where, several[0]),
                      "several certificates on one server are not served; give one "
                      "credentialName (or serverCertificate and privateKey)")
        return
    if tls.get("credentialName"):
        for field in ("serverCertificate", "privateKey", "caCertificates", "caCrl"):
            if tls.get(field):
                yield Finding(codes.GATEWAY_TLS_UNSERVED, (*where, field),
                              f"{field} cannot be given with credentialName, whose Secret "
                              "holds the certificates; remove one of them")
        return
    for field in ("serverCertificate", "privateKey"):
        if not tls.get(field):
            yield Finding(codes.MISSING_FIELD, (*where, field),
                          f"{mode} needs credentialName (a kubernetes.io/tls Secret), or "
                          "serverCertificate and privateKey files")
    if mode != "SIMPLE" and not tls.get("caCertificates"):
        yield Finding(codes.MISSING_FIELD, (*where, "caCertificates"),
                      f"{mode} verifies client certificates: it needs caCertificates (or a "
                      "credentialName whose Secret has ca.crt)")
