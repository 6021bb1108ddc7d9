"""The mesh config file (meshConfig-shaped, given to ``up``): what it sets and how a bad
one is refused, naming the file, line, field and the valid values.

Follows Istio's meshConfig (``outboundTrafficPolicy.mode``, ALLOW_ANY by default) as the
``istio`` ConfigMap and ``IstioOperator.spec.meshConfig`` hold it; ``dnsResolvers`` is
meshpilot's own. Istio fields meshpilot does not act on are warned about, never dropped
in silence.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from meshpilot.api.mesh_config import DnsResolver, MeshConfig
from meshpilot.server.mesh_config_file import load_mesh_config
from meshpilot.statedir import StateDir
from meshpilot.validation.mesh_config import (
    MeshConfigError,
    parse_mesh_config,
    parse_resolver,
    read_mesh_config,
)


def parse(text: str) -> tuple[MeshConfig, list[str]]:
    config, warnings = parse_mesh_config(textwrap.dedent(text).lstrip(), "mesh.yaml")
    return config, [w.format() for w in warnings]


def refused(text: str) -> list[str]:
    with pytest.raises(MeshConfigError) as caught:
        parse_mesh_config(textwrap.dedent(text).lstrip(), "mesh.yaml")
    return [d.format() for d in caught.value.diagnostics]


def test_defaults_are_istios() -> None:
    assert parse("") == (MeshConfig(), [])
    assert MeshConfig().outbound_mode == "ALLOW_ANY" and MeshConfig().dns_resolvers == ()


def test_mode_and_resolvers() -> None:
    config, warnings = parse("""
        outboundTrafficPolicy:
          mode: REGISTRY_ONLY
        dnsResolvers: ["127.0.0.1:5353", "10.0.0.2", "[::1]:53"]
        """)
    assert warnings == []
    assert config.outbound_mode == "REGISTRY_ONLY"
    assert config.dns_resolvers == (DnsResolver("127.0.0.1", 5353), DnsResolver("10.0.0.2"),
                                    DnsResolver("::1", 53))


def test_an_unknown_field_is_refused_with_its_line_and_the_valid_ones() -> None:
    (error,) = refused("""
        outboundTrafficPolicy:
          mode: ALLOW_ANY
        outboundTraficPolicy: {}
        """)
    assert error.startswith("mesh.yaml:3:1: error MP0080 [meshConfig] outboundTraficPolicy:")
    assert "did you mean 'outboundTrafficPolicy'" in error and "dnsResolvers" in error
    (nested,) = refused("meshConfig:\n  outboundTrafficPolicy: {mode: ALLOW_ANY}\n")
    assert "MP0080" in nested and "not under it" in nested


def test_a_bad_mode_names_the_valid_values() -> None:
    (error,) = refused("""
        outboundTrafficPolicy:
          mode: DENY_ALL
        """)
    assert error.startswith("mesh.yaml:2:3: error MP0081 [meshConfig] "
                            "outboundTrafficPolicy.mode:")
    assert "ALLOW_ANY, REGISTRY_ONLY" in error
    (shape,) = refused("outboundTrafficPolicy: REGISTRY_ONLY\n")
    assert "MP0081" in shape and "{mode: REGISTRY_ONLY}" in shape


@pytest.mark.parametrize("entry", ["dns.example.com", "127.0.0.1:0", "127.0.0.1:x",
                                   "[::1]x", 5353])
def test_a_bad_resolver_is_refused_at_its_item(entry: object) -> None:
    (error,) = refused(f'dnsResolvers: ["127.0.0.1", {entry!r}]\n'.replace("'", '"'))
    assert "MP0081" in error and "dnsResolvers[1]" in error and "invalid resolver" in error


def test_resolver_forms() -> None:
    assert parse_resolver("127.0.0.1") == DnsResolver("127.0.0.1", 53)
    assert parse_resolver("[::1]:5353") == DnsResolver("::1", 5353)
    assert parse_resolver("::1") == DnsResolver("::1", 53)
    with pytest.raises(ValueError, match="not an IP address"):
        parse_resolver("resolver.local:53")
    assert refused("dnsResolvers: []\n")[0].count("MP0081") == 1


def test_istio_fields_meshpilot_does_not_act_on_are_warned_about() -> None:
    config, warnings = parse("""
        accessLogFile: /dev/stdout
        trustDomain: example.org
        outboundTrafficPolicy:
          mode: REGISTRY_ONLY
        """)
    assert config.outbound_mode == "REGISTRY_ONLY"
    assert [w.split(" [")[0] for w in warnings] == [
        "mesh.yaml:1:1: warning MP2051", "mesh.yaml:2:1: warning MP2051"]
    assert "up --trust-domain" in warnings[1]


def test_an_egress_proxy_is_refused_rather_than_bypassed() -> None:
    (error,) = refused("""
        outboundTrafficPolicy:
          mode: ALLOW_ANY
          egressProxy: {host: istio-egressgateway.istio-system.svc.cluster.local}
        """)
    assert error.startswith("mesh.yaml:3:3: error MP0082 [meshConfig] "
                            "outboundTrafficPolicy.egressProxy:")


def test_a_file_that_is_not_one_object_or_not_yaml_is_refused(tmp_path: Path) -> None:
    assert "MP0079" in refused("- outboundTrafficPolicy\n")[0]
    assert "MP0079" in refused("a: 1\n---\nb: 2\n")[0]
    assert "MP0079" in refused("a: [1\n")[0]
    with pytest.raises(MeshConfigError, match=r"MP0079.*cannot read"):
        read_mesh_config(tmp_path / "missing.yaml")


def test_up_reads_the_flag_else_the_state_directory_file(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.root.mkdir()
    assert load_mesh_config(state, None) == MeshConfig()  # no file: Istio's defaults
    (state.root / "mesh.yaml").write_text("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")
    assert load_mesh_config(state, None).outbound_mode == "REGISTRY_ONLY"
    given = tmp_path / "other.yaml"
    given.write_text("outboundTrafficPolicy: {mode: ALLOW_ANY}\n")
    assert load_mesh_config(state, str(given)).outbound_mode == "ALLOW_ANY"
    given.write_text("outboundTrafficPolicy: {mode: allow_any}\n")
    with pytest.raises(MeshConfigError, match=r"other\.yaml:1:.*MP0081"):
        load_mesh_config(state, str(given))
