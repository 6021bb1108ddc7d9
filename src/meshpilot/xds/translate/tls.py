"""Transport sockets: the TLS a sidecar originates (DestinationRule ``tls``, auto mTLS) and
the mTLS it accepts on an inbound port (PeerAuthentication mode), with Istio's names.

Istio's workload identity reaches Envoy over SDS, here fetched on the proxy's ADS stream
(``sds_config: {ads: {}, resource_api_version: V3}``): the secret ``default`` is the
workload's certificate chain and key, ``ROOTCA`` the trust bundle. Every function here
only *names* those secrets; serving them is the SDS server's job.

Upstream (client side), following Istio's ``applyUpstreamTLSSettings``:

- ``ISTIO_MUTUAL`` presents ``default``, verifies the server against ``ROOTCA`` and its
  SPIFFE ID (the service's service accounts), offers ALPN ``istio-peer-exchange``,
  ``istio`` (plus ``h2`` for HTTP/2 clusters) and sends the cluster name as SNI when the
  rule names none.
- ``SIMPLE`` / ``MUTUAL`` verify the server with ``caCertificates`` (a file on the
  proxy's host) or, without one, the system roots (Istio's default); ``credentialName``
  names SDS secrets instead (``<name>`` for the client certificate, ``<name>-cacert`` for
  the CA, Istio's suffix). Without an ``sni`` they ask for Envoy's auto SNI and (without
  ``subjectAltNames``) auto SAN validation, which are cluster options: see
  :class:`UpstreamTls`.
- No ``tls`` in any rule: auto mTLS, a transport socket *match* per endpoint: mTLS to
  endpoints whose metadata says ``tlsMode: istio`` (they have a sidecar), plaintext to
  the rest.

Downstream (server side): :func:`inbound_filter_chains` builds the chains of an inbound
port for its effective PeerAuthentication mode, and :func:`peer_principal_mutation` lets
the HTTP chain that terminated mTLS tell the app (and telemetry) who called.

Settings this module cannot translate faithfully raise :class:`UnsupportedTls`, which
names the field, so the caller can refuse the rule rather than send weaker TLS than asked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2, extension_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    header_mutation_pb2 as early_hm,
)
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import struct_pb2

from meshpilot.api.networking import ClientTLSSettings, tls_settings_problem
from meshpilot.security.identity import DEFAULT_TRUST_DOMAIN
from meshpilot.xds.translate import pb
from meshpilot.xds.translate.policy import HTTP_OPTIONS_KEY

SDS_DEFAULT = "default"
"""SDS secret of the workload's certificate chain and private key (Istio's name)."""
SDS_ROOT = "ROOTCA"
"""SDS secret of the trust bundle workload certificates are verified against."""
CREDENTIAL_PREFIX = "kubernetes://"
"""SDS names of a user's credentials (a ``credentialName``) start with this (Istio's
KubernetesSecretTypeURI), so they never meet a workload's own ``default`` / ``ROOTCA``."""
CREDENTIAL_CA_SUFFIX = "-cacert"
"""``credentialName`` + this names the CA secret of a credential (Istio's SdsCaSuffix)."""

TLS_SOCKET = "envoy.transport_sockets.tls"
RAW_SOCKET = "envoy.transport_sockets.raw_buffer"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
EARLY_MUTATION = "envoy.http.early_header_mutation.header_mutation"

SOCKET_MATCH_FILTER = "envoy.transport_socket_match"
"""Endpoint metadata namespace Envoy reads ``transport_socket_matches`` against."""
TLS_MODE_KEY = "tlsMode"
TLS_MODE_ISTIO = "istio"

ISTIO_ALPNS = ("istio-peer-exchange", "istio")
"""What an Istio client offers over mTLS (Istio's ALPNInMeshWithMxc): lets a PERMISSIVE
server tell mesh traffic from other TLS."""
ISTIO_MTLS_ALPNS = ("istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2")
"""Every ALPN an Istio sidecar may offer over mTLS (Istio's allIstioMtlsALPNs): the
PERMISSIVE mTLS chain matches on these."""
DOWNSTREAM_ALPNS = ("h2", "http/1.1")
"""What the inbound mTLS context offers (Istio's ALPNDownstream): never ``istio``, which
would hide the real protocol from the connection manager's codec detection."""
ISTIO_CIPHER_SUITES = (
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
)
"""The TLS 1.2 suites Istio's sidecars accept inbound (TLS 1.3 suites are fixed)."""

PEER_PRINCIPAL_HEADER = "x-meshpilot-peer-principal"
"""Request header carrying the caller's SPIFFE ID, written by the inbound sidecar from the
peer certificate on the mTLS chain and stripped on the plaintext one, so an app may trust
it (any value a client sends is replaced or removed)."""
PEER_URI_SAN = "%DOWNSTREAM_PEER_URI_SAN%"

MtlsMode = Literal["STRICT", "PERMISSIVE", "DISABLE"]
MakeFilters = Callable[[bool], list[lc.Filter]]


class UnsupportedTls(ValueError):
    """A ``tls`` setting that cannot be translated as written. ``field`` is its path in
    the DestinationRule's ``tls`` (``clientCertificate``), for the caller's refusal."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"tls.{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class UpstreamTls:
    """What a cluster needs for the TLS it originates (:func:`apply_upstream_tls` puts it
    on a cluster).

    ``transport_socket`` goes to ``Cluster.transport_socket`` and ``socket_matches`` to
    ``Cluster.transport_socket_matches`` (auto mTLS); at most one is set. ``auto_sni`` and
    ``auto_san_validation`` go to the cluster's ``HttpProtocolOptions
    .upstream_http_protocol_options`` (Istio sets them for SIMPLE/MUTUAL without ``sni``:
    the request's host becomes the SNI and is verified against the server certificate).
    """

    transport_socket: base_pb2.TransportSocket | None = None
    socket_matches: tuple[cluster_pb2.Cluster.TransportSocketMatch, ...] = ()
    auto_sni: bool = False
    auto_san_validation: bool = False


# --- building blocks -------------------------------------------------------------------


CREDENTIAL_FETCH_TIMEOUT = "1s"
"""How long a cluster or listener waits for a user's credential before it is in use
without it (failing its handshakes closed); it comes at once when its Secret exists."""


def sds_secret(name: str) -> secret_pb2.SdsSecretConfig:
    """A reference to SDS secret ``name``, fetched over the proxy's ADS stream. A user's
    credential (``kubernetes://...``) may not exist yet: Envoy waits only
    :data:`CREDENTIAL_FETCH_TIMEOUT` for it, not its default 15 s, during which the proxy's
    other updates would wait behind the warming cluster."""
    source = pb.ads_source()
    if name.startswith(CREDENTIAL_PREFIX):
        source.initial_fetch_timeout.CopyFrom(pb.duration(CREDENTIAL_FETCH_TIMEOUT))
    return secret_pb2.SdsSecretConfig(name=name, sds_config=source)


def san_matchers(names: Sequence[str]) -> list[common_pb2.SubjectAltNameMatcher]:
    """Exact SAN matchers, typed by the look of each name: a URI (``spiffe://...``), an IP
    address, else a DNS name. (Istio's untyped ``match_subject_alt_names`` is deprecated
    in Envoy; typing by form keeps the meaning for every SAN a rule can list.)"""
    return [_san_matcher(name) for name in names]


def _san_matcher(name: str) -> common_pb2.SubjectAltNameMatcher:
    kind = common_pb2.SubjectAltNameMatcher
    if "://" in name:
        san_type = kind.URI
    elif _is_ip(name):
        san_type = kind.IP_ADDRESS
    else:
        san_type = kind.DNS
    return kind(san_type=san_type, matcher=string_pb2.StringMatcher(exact=name))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _socket(context: tls_pb2.UpstreamTlsContext | tls_pb2.DownstreamTlsContext,
            ) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=pb.pack(context))


def plaintext_socket() -> base_pb2.TransportSocket:
    """The raw_buffer socket: what Istio's auto mTLS falls back to."""
    raw = raw_buffer_pb2.RawBuffer()
    return base_pb2.TransportSocket(name=RAW_SOCKET, typed_config=pb.pack(raw))


def _tls_params() -> common_pb2.TlsParameters:
    """TLS 1.2 to 1.3, as Istio's sidecars negotiate."""
    return common_pb2.TlsParameters(
        tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_2,
        tls_maximum_protocol_version=common_pb2.TlsParameters.TLSv1_3,
    )


def _workload_common(
    subject_alt_names: Sequence[str], alpns: Sequence[str]
) -> tls_pb2.CommonTlsContext:
    """Present the workload certificate (SDS ``default``) and verify the peer against the
    trust bundle (SDS ``ROOTCA``) and, if given, its SANs."""
    return tls_pb2.CommonTlsContext(
        tls_params=_tls_params(),
        alpn_protocols=list(alpns),
        tls_certificate_sds_secret_configs=[sds_secret(SDS_DEFAULT)],
        combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
            default_validation_context=common_pb2.CertificateValidationContext(
                match_typed_subject_alt_names=san_matchers(subject_alt_names)
            ),
            validation_context_sds_secret_config=sds_secret(SDS_ROOT),
        ),
    )


# --- upstream --------------------------------------------------------------------------


def istio_mutual_upstream(
    sni: str, subject_alt_names: Sequence[str], *, http2: bool = False
) -> base_pb2.TransportSocket:
    """Istio's ISTIO_MUTUAL client socket: the workload certificate, the peer verified
    against ``ROOTCA`` and ``subject_alt_names`` (SPIFFE IDs; none = any identity the
    trust bundle vouches for), ALPN ``istio-peer-exchange``, ``istio`` (and ``h2`` for an
    HTTP/2 cluster, as Istio adds), and ``sni`` (Istio: the cluster name by default)."""
    alpns = (*ISTIO_ALPNS, "h2") if http2 else ISTIO_ALPNS
    context = tls_pb2.UpstreamTlsContext(
        common_tls_context=_workload_common(subject_alt_names, alpns), sni=sni
    )
    return _socket(context)


def auto_mtls_matches(
    subject_alt_names: Sequence[str], sni: str, *, http2: bool = False
) -> list[cluster_pb2.Cluster.TransportSocketMatch]:
    """Istio's auto mTLS: ISTIO_MUTUAL to endpoints whose metadata (filter
    ``envoy.transport_socket_match``) says ``tlsMode: istio``, plaintext to the others.
    Endpoints carry that metadata from :func:`endpoint_tls_metadata`. An endpoint no
    match applies to gets the cluster's default socket, plaintext, so the catch-all match
    Istio also writes is left out: every cluster of every proxy carries these bytes."""
    match = cluster_pb2.Cluster.TransportSocketMatch
    istio = struct_pb2.Struct()
    istio.update({TLS_MODE_KEY: TLS_MODE_ISTIO})
    return [
        match(
            name=f"{TLS_MODE_KEY}-{TLS_MODE_ISTIO}",
            match=istio,
            transport_socket=istio_mutual_upstream(sni, subject_alt_names, http2=http2),
        ),
    ]


def endpoint_tls_metadata(has_sidecar: bool) -> base_pb2.Metadata:
    """``LbEndpoint.metadata`` for auto mTLS: ``tlsMode: istio`` under
    ``envoy.transport_socket_match`` when the endpoint's workload has a sidecar to
    terminate mTLS; empty otherwise (Istio writes nothing for plaintext endpoints)."""
    out = base_pb2.Metadata()
    if has_sidecar:
        out.filter_metadata[SOCKET_MATCH_FILTER].update({TLS_MODE_KEY: TLS_MODE_ISTIO})
    return out


def upstream_tls(
    settings: ClientTLSSettings | None,
    *,
    sni: str,
    subject_alt_names: Sequence[str],
    http2: bool = False,
    auto_mtls: bool = True,
) -> UpstreamTls:
    """The TLS a cluster originates under a DestinationRule's ``tls`` (``settings``, after
    subset/port merging), following Istio.

    ``sni`` and ``subject_alt_names`` are Istio's defaults for (auto) ISTIO_MUTUAL: the
    cluster name and the SPIFFE IDs of the service's workloads. ``settings=None`` (no
    rule sets ``tls``) gives auto mTLS when ``auto_mtls``; pass False where Istio skips it
    (MESH_EXTERNAL services, a destination whose PeerAuthentication is DISABLE, auto mTLS
    turned off). Raises :class:`UnsupportedTls` naming the field it cannot honour.
    """
    if settings is None:
        if not auto_mtls:
            return UpstreamTls()
        return UpstreamTls(socket_matches=tuple(auto_mtls_matches(subject_alt_names, sni,
                                                                  http2=http2)))
    problem = tls_settings_problem(settings)
    if problem is not None:
        raise UnsupportedTls(*problem)
    mode = settings.mode or "DISABLE"  # Istio's enum default
    if mode == "DISABLE":
        return UpstreamTls()
    if mode == "ISTIO_MUTUAL":
        return UpstreamTls(transport_socket=istio_mutual_upstream(
            settings.sni or sni, settings.subject_alt_names or subject_alt_names, http2=http2))
    return _simple_or_mutual(settings, mutual=mode == "MUTUAL", http2=http2)


def apply_upstream_tls(cluster: cluster_pb2.Cluster, chosen: UpstreamTls) -> None:
    """Put ``chosen`` on ``cluster`` (in place, as :func:`~meshpilot.xds.translate.policy.
    apply_policy` does): the socket or socket matches, and auto SNI / SAN validation in
    the cluster's HTTP protocol options. A cluster without HTTP options (TCP) has no
    request host to take a SNI from, so those two flags are left out there."""
    if chosen.transport_socket is not None:
        cluster.transport_socket.CopyFrom(chosen.transport_socket)
    cluster.transport_socket_matches.extend(chosen.socket_matches)
    if not (chosen.auto_sni or chosen.auto_san_validation):
        return
    if HTTP_OPTIONS_KEY not in cluster.typed_extension_protocol_options:
        return
    packed = cluster.typed_extension_protocol_options[HTTP_OPTIONS_KEY]
    options = hpo.HttpProtocolOptions()
    packed.Unpack(options)
    options.upstream_http_protocol_options.auto_sni = chosen.auto_sni
    options.upstream_http_protocol_options.auto_san_validation = chosen.auto_san_validation
    packed.CopyFrom(pb.pack(options))


def _simple_or_mutual(settings: ClientTLSSettings, *, mutual: bool, http2: bool) -> UpstreamTls:
    common = tls_pb2.CommonTlsContext(tls_params=_tls_params())
    if http2:
        common.alpn_protocols.append("h2")
    if mutual:
        common.tls_certificate_sds_secret_configs.extend(_client_sds(settings))
        common.tls_certificates.extend(_client_files(settings))
    _server_validation(common, settings)
    context = tls_pb2.UpstreamTlsContext(common_tls_context=common, sni=settings.sni or "")
    auto_sni = not settings.sni
    return UpstreamTls(
        transport_socket=_socket(context),
        auto_sni=auto_sni,
        auto_san_validation=(auto_sni and not settings.subject_alt_names
                             and not settings.insecure_skip_verify),
    )


def _client_sds(settings: ClientTLSSettings) -> list[secret_pb2.SdsSecretConfig]:
    return [sds_secret(CREDENTIAL_PREFIX + settings.credential_name)] \
        if settings.credential_name else []


def _client_files(settings: ClientTLSSettings) -> list[common_pb2.TlsCertificate]:
    if settings.credential_name:
        return []
    return [common_pb2.TlsCertificate(
        certificate_chain=base_pb2.DataSource(filename=settings.client_certificate or ""),
        private_key=base_pb2.DataSource(filename=settings.private_key or ""),
    )]


def _server_validation(common: tls_pb2.CommonTlsContext, settings: ClientTLSSettings) -> None:
    """How the server is verified: not at all (insecureSkipVerify), against the
    credential's CA secret, the ``caCertificates`` file, or the system roots."""
    if settings.insecure_skip_verify:
        common.validation_context.CopyFrom(common_pb2.CertificateValidationContext())
        return
    default = common_pb2.CertificateValidationContext(
        match_typed_subject_alt_names=san_matchers(settings.subject_alt_names)
    )
    if settings.credential_name:
        common.combined_validation_context.default_validation_context.CopyFrom(default)
        common.combined_validation_context.validation_context_sds_secret_config.CopyFrom(
            sds_secret(CREDENTIAL_PREFIX + settings.credential_name + CREDENTIAL_CA_SUFFIX))
        return
    if settings.ca_certificates:
        default.trusted_ca.filename = settings.ca_certificates
    else:
        default.system_root_certs.SetInParent()
    if settings.ca_crl:
        default.crl.filename = settings.ca_crl
    common.validation_context.CopyFrom(default)


# --- downstream ------------------------------------------------------------------------


def inbound_mtls_context(trust_domain: str) -> tls_pb2.DownstreamTlsContext:
    """Istio's inbound mTLS: present the workload certificate, require a client
    certificate that verifies against ``ROOTCA`` and carries a SPIFFE ID of
    ``trust_domain`` (any workload of the mesh; *which* one may call is authorization's
    business), ALPN ``h2``, ``http/1.1``, TLS 1.2+ with Istio's suites."""
    common = _workload_common((), DOWNSTREAM_ALPNS)
    common.tls_params.cipher_suites.extend(ISTIO_CIPHER_SUITES)
    default = common.combined_validation_context.default_validation_context
    default.match_typed_subject_alt_names.append(common_pb2.SubjectAltNameMatcher(
        san_type=common_pb2.SubjectAltNameMatcher.URI,
        matcher=string_pb2.StringMatcher(prefix=f"spiffe://{trust_domain}/"),
    ))
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=common, require_client_certificate={"value": True}
    )


def tls_inspector() -> lc.ListenerFilter:
    """The listener filter that sets ``transport_protocol`` (and the ALPNs) a filter
    chain can match on, so one port can take mTLS and plaintext (PERMISSIVE)."""
    return lc.ListenerFilter(name=TLS_INSPECTOR,
                             typed_config=pb.pack(tls_inspector_pb2.TlsInspector()))


def inbound_filter_chains(
    mode: MtlsMode, make_filters: MakeFilters, *, trust_domain: str = DEFAULT_TRUST_DOMAIN
) -> tuple[list[lc.FilterChain], list[lc.ListenerFilter]]:
    """The filter chains (and listener filters) of a sidecar's inbound port under its
    effective PeerAuthentication ``mode`` (see ``meshpilot.security.effective_mtls``):

    - STRICT: one chain terminating mTLS; a plaintext or certificate-less client fails
      the handshake.
    - PERMISSIVE: the TLS inspector, a chain for mTLS from a mesh client (``transport
      protocol: tls`` and an Istio ALPN) and one for plaintext (``raw_buffer``). Other TLS
      finds no chain and is closed. For a server-speaks-first protocol, set the
      listener's ``continue_on_listener_filters_timeout`` (Istio does) so a silent
      plaintext client is not held by the inspector.
    - DISABLE: the plaintext chain only; a client offering TLS finds its handshake
      answered by the app's protocol and fails.

    ``make_filters(mtls)`` builds each chain's network filters (the connection manager
    or tcp_proxy), so the mTLS chain may differ, e.g. by :func:`peer_principal_mutation`.
    """
    if mode not in ("STRICT", "PERMISSIVE", "DISABLE"):
        raise ValueError(f"mTLS mode {mode!r} is not STRICT, PERMISSIVE or DISABLE")
    plaintext = lc.FilterChain(name="plaintext", filters=make_filters(False))
    if mode == "DISABLE":
        return [plaintext], []
    mtls = lc.FilterChain(
        name="mtls",
        filters=make_filters(True),
        transport_socket=_socket(inbound_mtls_context(trust_domain)),
    )
    if mode == "STRICT":
        return [mtls], []
    mtls.filter_chain_match.transport_protocol = "tls"
    mtls.filter_chain_match.application_protocols.extend(ISTIO_MTLS_ALPNS)
    plaintext.filter_chain_match.transport_protocol = "raw_buffer"
    return [mtls, plaintext], [tls_inspector()]


def removal_mutation(headers: Iterable[str]) -> extension_pb2.TypedExtensionConfig:
    """For ``early_header_mutation_extensions``: remove ``headers`` from every request
    before routing and every HTTP filter, so only a filter that sets them (the JWT
    filter's claim headers) can make them reach the application."""
    rules = [mutation_rules_pb2.HeaderMutation(remove=h) for h in headers]
    mutation = early_hm.HeaderMutation(mutations=rules)
    return extension_pb2.TypedExtensionConfig(name=EARLY_MUTATION, typed_config=pb.pack(mutation))


def peer_principal_mutation(mtls: bool) -> extension_pb2.TypedExtensionConfig:
    """For an inbound connection manager's ``early_header_mutation_extensions``: on the
    mTLS chain, set :data:`PEER_PRINCIPAL_HEADER` to the peer certificate's URI SAN (its
    SPIFFE ID), replacing whatever the client sent; on the plaintext chain, remove it.
    Runs before routing and every HTTP filter, so nothing downstream sees a forged value.
    """
    option = base_pb2.HeaderValueOption
    if mtls:
        rule = mutation_rules_pb2.HeaderMutation(append=option(
            header=base_pb2.HeaderValue(key=PEER_PRINCIPAL_HEADER, value=PEER_URI_SAN),
            append_action=option.OVERWRITE_IF_EXISTS_OR_ADD,
        ))
    else:
        rule = mutation_rules_pb2.HeaderMutation(remove=PEER_PRINCIPAL_HEADER)
    mutation = early_hm.HeaderMutation(mutations=[rule])
    return extension_pb2.TypedExtensionConfig(name=EARLY_MUTATION, typed_config=pb.pack(mutation))
