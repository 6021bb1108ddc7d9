"""Transport sockets for Istio's TLS modes, asserted on the generated protobufs: the
SDS names and source, SANs, ALPNs and SNI of ISTIO_MUTUAL; DestinationRule SIMPLE and
MUTUAL; auto mTLS; the inbound chains of STRICT, PERMISSIVE and DISABLE; and refusals of
what cannot be honoured."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    header_mutation_pb2 as early_hm,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from google.protobuf import json_format
from pydantic import ValidationError

from meshpilot.api.networking import ClientTLSSettings
from meshpilot.xds.translate import tls
from meshpilot.xds.translate.policy import HTTP_OPTIONS_KEY, apply_policy

SAN = "spiffe://cluster.local/ns/default/sa/reviews"
CLUSTER = "outbound|9080|v1|reviews.default.svc.cluster.local"
URI = common_pb2.SubjectAltNameMatcher.URI
DNS = common_pb2.SubjectAltNameMatcher.DNS
IP = common_pb2.SubjectAltNameMatcher.IP_ADDRESS


def upstream(socket: base_pb2.TransportSocket) -> tls_pb2.UpstreamTlsContext:
    assert socket.name == "envoy.transport_sockets.tls"
    out = tls_pb2.UpstreamTlsContext()
    assert socket.typed_config.Unpack(out)
    return out


def downstream(socket: base_pb2.TransportSocket) -> tls_pb2.DownstreamTlsContext:
    assert socket.name == "envoy.transport_sockets.tls"
    out = tls_pb2.DownstreamTlsContext()
    assert socket.typed_config.Unpack(out)
    return out


def assert_ads_secret(config: secret_pb2.SdsSecretConfig, name: str) -> None:
    assert config.name == name
    assert config.sds_config.HasField("ads")
    assert config.sds_config.resource_api_version == config_source_pb2.V3


def sans(context: common_pb2.CertificateValidationContext) -> list[tuple[int, dict[str, Any]]]:
    return [(m.san_type, json_format.MessageToDict(m.matcher))
            for m in context.match_typed_subject_alt_names]


def settings(**kw: Any) -> ClientTLSSettings:
    return ClientTLSSettings.model_validate(kw)


def unchecked(**kw: Any) -> ClientTLSSettings:
    """Settings as stored before their validation existed: the translation must refuse
    what it cannot honour on its own, as apply now does (``assert_refused_at_apply``)."""
    fields = {f.alias or name: name for name, f in ClientTLSSettings.model_fields.items()}
    return ClientTLSSettings.model_construct(**{fields.get(k, k): v for k, v in kw.items()})


def assert_refused_at_apply(field: str, **kw: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**kw)
    assert f"tls.{field} " in str(caught.value)


# --- ISTIO_MUTUAL ----------------------------------------------------------------------


def test_istio_mutual_presents_default_and_verifies_rootca_and_the_spiffe_id():
    context = upstream(tls.istio_mutual_upstream(CLUSTER, [SAN]))
    common = context.common_tls_context
    assert context.sni == CLUSTER
    assert list(common.alpn_protocols) == ["istio-peer-exchange", "istio"]
    [cert] = common.tls_certificate_sds_secret_configs
    assert_ads_secret(cert, "default")
    combined = common.combined_validation_context
    assert_ads_secret(combined.validation_context_sds_secret_config, "ROOTCA")
    assert sans(combined.default_validation_context) == [(URI, {"exact": SAN})]
    assert common.tls_params.tls_minimum_protocol_version == common_pb2.TlsParameters.TLSv1_2


def test_istio_mutual_for_http2_adds_h2_and_without_sans_checks_the_bundle_only():
    context = upstream(tls.istio_mutual_upstream(CLUSTER, [], http2=True))
    common = context.common_tls_context
    assert list(common.alpn_protocols) == ["istio-peer-exchange", "istio", "h2"]
    assert not common.combined_validation_context.default_validation_context \
        .match_typed_subject_alt_names


def test_destination_rule_istio_mutual_uses_its_own_sni_and_sans_over_the_defaults():
    chosen = tls.upstream_tls(
        settings(mode="ISTIO_MUTUAL", sni="my.sni", subjectAltNames=["spiffe://td/ns/a/sa/b"]),
        sni=CLUSTER, subject_alt_names=[SAN])
    context = upstream(chosen.transport_socket)
    assert context.sni == "my.sni"
    assert sans(context.common_tls_context.combined_validation_context
                .default_validation_context) == [(URI, {"exact": "spiffe://td/ns/a/sa/b"})]
    assert not chosen.socket_matches and not chosen.auto_sni

    defaulted = upstream(tls.upstream_tls(settings(mode="ISTIO_MUTUAL"), sni=CLUSTER,
                                          subject_alt_names=[SAN]).transport_socket)
    assert defaulted.sni == CLUSTER
    assert sans(defaulted.common_tls_context.combined_validation_context
                .default_validation_context) == [(URI, {"exact": SAN})]


@pytest.mark.parametrize("field,value", [
    ("clientCertificate", "/c.pem"), ("privateKey", "/k.pem"), ("caCertificates", "/ca.pem"),
    ("credentialName", "cred"), ("caCrl", "/crl.pem"), ("insecureSkipVerify", True),
])
def test_istio_mutual_refuses_certificates_of_its_own(field: str, value: Any):
    with pytest.raises(tls.UnsupportedTls) as caught:
        tls.upstream_tls(unchecked(mode="ISTIO_MUTUAL", **{field: value}), sni=CLUSTER,
                         subject_alt_names=[SAN])
    assert caught.value.field == field
    assert str(caught.value).startswith(f"tls.{field}: ")
    assert_refused_at_apply(field, mode="ISTIO_MUTUAL", **{field: value})


# --- auto mTLS -------------------------------------------------------------------------


def test_auto_mtls_sends_istio_mutual_to_sidecars_and_plaintext_to_the_rest():
    """One match, for endpoints marked ``tlsMode: istio``; every other endpoint gets the
    cluster's default socket, which is plaintext (a catch-all match would say the same
    in bytes every cluster carries)."""
    [istio] = tls.auto_mtls_matches([SAN], CLUSTER)
    assert istio.name == "tlsMode-istio"
    assert dict(istio.match) == {"tlsMode": "istio"}
    assert upstream(istio.transport_socket).sni == CLUSTER


def test_no_tls_setting_means_auto_mtls_unless_turned_off():
    auto = tls.upstream_tls(None, sni=CLUSTER, subject_alt_names=[SAN])
    assert auto.transport_socket is None
    assert [m.name for m in auto.socket_matches] == ["tlsMode-istio"]
    assert tls.upstream_tls(None, sni=CLUSTER, subject_alt_names=[SAN],
                            auto_mtls=False) == tls.UpstreamTls()


def test_endpoint_metadata_marks_only_endpoints_with_a_sidecar():
    marked = tls.endpoint_tls_metadata(True)
    assert dict(marked.filter_metadata["envoy.transport_socket_match"]) == {"tlsMode": "istio"}
    assert tls.endpoint_tls_metadata(False) == base_pb2.Metadata()
    # the two meet: Envoy picks the first match whose fields the endpoint metadata has
    [istio] = tls.auto_mtls_matches([SAN], CLUSTER)
    assert dict(istio.match).items() <= dict(marked.filter_metadata[
        "envoy.transport_socket_match"]).items()


# --- DISABLE, SIMPLE, MUTUAL -----------------------------------------------------------


def test_disable_sends_plaintext_and_refuses_settings_it_would_drop():
    assert tls.upstream_tls(settings(mode="DISABLE"), sni=CLUSTER,
                            subject_alt_names=[SAN]) == tls.UpstreamTls()
    assert tls.upstream_tls(settings(), sni=CLUSTER, subject_alt_names=[]) == tls.UpstreamTls()
    with pytest.raises(tls.UnsupportedTls) as caught:
        tls.upstream_tls(unchecked(mode="DISABLE", sni="x"), sni=CLUSTER, subject_alt_names=[])
    assert caught.value.field == "sni"
    assert_refused_at_apply("sni", mode="DISABLE", sni="x")


def test_simple_verifies_the_server_with_the_ca_file_sni_and_typed_sans():
    chosen = tls.upstream_tls(
        settings(mode="SIMPLE", caCertificates="/etc/certs/ca.pem", sni="api.example.com",
                 subjectAltNames=["api.example.com", "spiffe://x/y", "10.0.0.1"],
                 caCrl="/etc/certs/crl.pem"),
        sni=CLUSTER, subject_alt_names=[SAN])
    assert not chosen.auto_sni and not chosen.auto_san_validation
    context = upstream(chosen.transport_socket)
    assert context.sni == "api.example.com"
    common = context.common_tls_context
    assert not common.tls_certificate_sds_secret_configs and not common.tls_certificates
    assert not common.alpn_protocols
    validation = common.validation_context
    assert validation.trusted_ca.filename == "/etc/certs/ca.pem"
    assert validation.crl.filename == "/etc/certs/crl.pem"
    assert sans(validation) == [(DNS, {"exact": "api.example.com"}),
                                (URI, {"exact": "spiffe://x/y"}), (IP, {"exact": "10.0.0.1"})]


def test_simple_without_ca_or_sni_uses_system_roots_auto_sni_and_auto_san_validation():
    chosen = tls.upstream_tls(settings(mode="SIMPLE"), sni=CLUSTER, subject_alt_names=[SAN],
                              http2=True)
    assert chosen.auto_sni and chosen.auto_san_validation
    context = upstream(chosen.transport_socket)
    assert context.sni == ""
    assert context.common_tls_context.validation_context.HasField("system_root_certs")
    assert list(context.common_tls_context.alpn_protocols) == ["h2"]


def test_simple_with_sans_but_no_sni_asks_auto_sni_only():
    chosen = tls.upstream_tls(settings(mode="SIMPLE", subjectAltNames=["a.example"]),
                              sni=CLUSTER, subject_alt_names=[])
    assert chosen.auto_sni and not chosen.auto_san_validation


def test_insecure_skip_verify_verifies_nothing():
    chosen = tls.upstream_tls(settings(mode="SIMPLE", insecureSkipVerify=True), sni=CLUSTER,
                              subject_alt_names=[])
    assert chosen.auto_sni and not chosen.auto_san_validation
    common = upstream(chosen.transport_socket).common_tls_context
    assert common.HasField("validation_context")
    assert common.validation_context == common_pb2.CertificateValidationContext()


def test_simple_with_credential_name_reads_the_ca_from_its_cacert_secret():
    common = upstream(tls.upstream_tls(
        settings(mode="SIMPLE", credentialName="api-cred", subjectAltNames=["api.example.com"]),
        sni=CLUSTER, subject_alt_names=[]).transport_socket).common_tls_context
    assert not common.tls_certificate_sds_secret_configs
    combined = common.combined_validation_context
    assert_ads_secret(combined.validation_context_sds_secret_config, "kubernetes://api-cred-cacert")
    assert sans(combined.default_validation_context) == [(DNS, {"exact": "api.example.com"})]


def test_mutual_presents_the_client_certificate_files():
    common = upstream(tls.upstream_tls(
        settings(mode="MUTUAL", clientCertificate="/c.pem", privateKey="/k.pem",
                 caCertificates="/ca.pem", sni="db.example"),
        sni=CLUSTER, subject_alt_names=[]).transport_socket).common_tls_context
    [cert] = common.tls_certificates
    assert cert.certificate_chain.filename == "/c.pem"
    assert cert.private_key.filename == "/k.pem"
    assert common.validation_context.trusted_ca.filename == "/ca.pem"


def test_mutual_with_credential_name_uses_the_credential_and_its_ca_secrets():
    common = upstream(tls.upstream_tls(settings(mode="MUTUAL", credentialName="db"),
                                       sni=CLUSTER, subject_alt_names=[]).transport_socket
                      ).common_tls_context
    [cert] = common.tls_certificate_sds_secret_configs
    assert_ads_secret(cert, "kubernetes://db")
    assert not common.tls_certificates
    assert_ads_secret(common.combined_validation_context.validation_context_sds_secret_config,
                      "kubernetes://db-cacert")


def test_mutual_with_credential_name_and_insecure_skip_verify_presents_but_verifies_nothing():
    common = upstream(tls.upstream_tls(
        settings(mode="MUTUAL", credentialName="db", insecureSkipVerify=True),
        sni=CLUSTER, subject_alt_names=[]).transport_socket).common_tls_context
    assert [c.name for c in common.tls_certificate_sds_secret_configs] == ["kubernetes://db"]
    assert common.validation_context == common_pb2.CertificateValidationContext()


@pytest.mark.parametrize("given,field", [
    ({"mode": "SIMPLE", "clientCertificate": "/c.pem"}, "clientCertificate"),
    ({"mode": "MUTUAL", "clientCertificate": "/c.pem"}, "privateKey"),
    ({"mode": "MUTUAL", "privateKey": "/k.pem"}, "clientCertificate"),
    ({"mode": "MUTUAL", "credentialName": "c", "clientCertificate": "/c.pem"},
     "clientCertificate"),
    ({"mode": "SIMPLE", "credentialName": "c", "caCertificates": "/ca.pem"}, "caCertificates"),
    ({"mode": "SIMPLE", "credentialName": "c", "caCrl": "/crl.pem"}, "caCrl"),
    ({"mode": "SIMPLE", "insecureSkipVerify": True, "caCertificates": "/ca.pem"},
     "caCertificates"),
    ({"mode": "SIMPLE", "insecureSkipVerify": True, "subjectAltNames": ["a"]},
     "subjectAltNames"),
    ({"mode": "SIMPLE", "insecureSkipVerify": True, "credentialName": "c"}, "credentialName"),
])
def test_settings_that_cannot_be_honoured_are_refused_by_field(given: dict[str, Any], field: str):
    with pytest.raises(tls.UnsupportedTls) as caught:
        tls.upstream_tls(unchecked(**given), sni=CLUSTER, subject_alt_names=[])
    assert caught.value.field == field
    assert_refused_at_apply(field, **given)


# --- inbound ---------------------------------------------------------------------------


class Recorder:
    """A ``make_filters`` that remembers what it was asked for."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def __call__(self, mtls: bool) -> list[lc.Filter]:
        self.calls.append(mtls)
        return [lc.Filter(name="mtls" if mtls else "plain")]


def assert_inbound_mtls(chain: lc.FilterChain, trust_domain: str) -> None:
    context = downstream(chain.transport_socket)
    assert context.require_client_certificate.value is True
    common = context.common_tls_context
    assert_ads_secret(common.tls_certificate_sds_secret_configs[0], "default")
    combined = common.combined_validation_context
    assert_ads_secret(combined.validation_context_sds_secret_config, "ROOTCA")
    assert sans(combined.default_validation_context) == [
        (URI, {"prefix": f"spiffe://{trust_domain}/"})]
    assert list(common.alpn_protocols) == ["h2", "http/1.1"]
    assert "ECDHE-ECDSA-AES256-GCM-SHA384" in common.tls_params.cipher_suites
    assert [f.name for f in chain.filters] == ["mtls"]


def test_strict_is_one_chain_that_requires_a_client_certificate():
    make = Recorder()
    chains, listener_filters = tls.inbound_filter_chains("STRICT", make,
                                                         trust_domain="example.org")
    assert listener_filters == []
    [chain] = chains
    assert not chain.HasField("filter_chain_match")
    assert_inbound_mtls(chain, "example.org")
    assert True in make.calls


def test_permissive_matches_mesh_mtls_and_plaintext_after_the_tls_inspector():
    make = Recorder()
    chains, listener_filters = tls.inbound_filter_chains("PERMISSIVE", make)
    assert [f.name for f in listener_filters] == ["envoy.filters.listener.tls_inspector"]
    mtls, plain = chains
    assert mtls.filter_chain_match.transport_protocol == "tls"
    assert set(tls.ISTIO_ALPNS) <= set(mtls.filter_chain_match.application_protocols)
    assert "istio-http/1.1" in mtls.filter_chain_match.application_protocols
    assert_inbound_mtls(mtls, "cluster.local")
    assert plain.filter_chain_match.transport_protocol == "raw_buffer"
    assert not plain.HasField("transport_socket")
    assert [f.name for f in plain.filters] == ["plain"]
    assert sorted(make.calls) == [False, True]


def test_disable_is_the_plaintext_chain_only():
    make = Recorder()
    chains, listener_filters = tls.inbound_filter_chains("DISABLE", make)
    assert listener_filters == []
    [chain] = chains
    assert not chain.HasField("transport_socket") and not chain.HasField("filter_chain_match")
    assert make.calls == [False]


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="UNSET"):
        tls.inbound_filter_chains("UNSET", Recorder())  # type: ignore[arg-type]


def test_peer_principal_header_is_set_from_the_certificate_on_mtls_and_removed_otherwise():
    def mutation(mtls: bool) -> early_hm.HeaderMutation:
        config = tls.peer_principal_mutation(mtls)
        assert config.name == "envoy.http.early_header_mutation.header_mutation"
        out = early_hm.HeaderMutation()
        assert config.typed_config.Unpack(out)
        return out

    [set_it] = mutation(True).mutations
    assert set_it.append.header.key == tls.PEER_PRINCIPAL_HEADER == "x-meshpilot-peer-principal"
    assert set_it.append.header.value == "%DOWNSTREAM_PEER_URI_SAN%"
    assert set_it.append.append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    [remove] = mutation(False).mutations
    assert remove.remove == tls.PEER_PRINCIPAL_HEADER


def test_the_same_input_gives_the_same_bytes():
    one = tls.auto_mtls_matches([SAN, "spiffe://cluster.local/ns/default/sa/b"], CLUSTER)
    two = tls.auto_mtls_matches([SAN, "spiffe://cluster.local/ns/default/sa/b"], CLUSTER)
    assert [m.SerializeToString(deterministic=True) for m in one] == \
        [m.SerializeToString(deterministic=True) for m in two]
    assert isinstance(one[0], cluster_pb2.Cluster.TransportSocketMatch)


# --- applying to a cluster -------------------------------------------------------------


def _http_options(cluster: cluster_pb2.Cluster) -> hpo.HttpProtocolOptions:
    out = hpo.HttpProtocolOptions()
    assert cluster.typed_extension_protocol_options[HTTP_OPTIONS_KEY].Unpack(out)
    return out


def test_apply_puts_socket_matches_and_auto_sni_on_the_cluster_keeping_its_http_options():
    cluster = cluster_pb2.Cluster(name=CLUSTER)
    apply_policy(cluster, None, http2=True)
    tls.apply_upstream_tls(cluster, tls.upstream_tls(settings(mode="SIMPLE"), sni=CLUSTER,
                                                     subject_alt_names=[]))
    assert upstream(cluster.transport_socket).common_tls_context.validation_context \
        .HasField("system_root_certs")
    options = _http_options(cluster)
    assert options.upstream_http_protocol_options.auto_sni
    assert options.upstream_http_protocol_options.auto_san_validation
    assert options.explicit_http_config.HasField("http2_protocol_options")

    auto = cluster_pb2.Cluster(name=CLUSTER)
    apply_policy(auto, None)
    tls.apply_upstream_tls(auto, tls.upstream_tls(None, sni=CLUSTER, subject_alt_names=[SAN]))
    assert not auto.HasField("transport_socket")
    assert [m.name for m in auto.transport_socket_matches] == ["tlsMode-istio"]
    assert not auto.HasField("transport_socket")  # plaintext to unmarked endpoints
    assert not _http_options(auto).HasField("upstream_http_protocol_options")


def test_apply_leaves_a_cluster_without_http_options_without_them():
    cluster = cluster_pb2.Cluster(name="tcp")
    tls.apply_upstream_tls(cluster, tls.upstream_tls(settings(mode="SIMPLE"), sni=CLUSTER,
                                                     subject_alt_names=[]))
    assert cluster.HasField("transport_socket")
    assert HTTP_OPTIONS_KEY not in cluster.typed_extension_protocol_options
