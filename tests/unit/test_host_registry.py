"""The control plane's side of joined hosts, on a real store, CA and validation path:
Istio's WorkloadGroup auto-registration (entry GROUP-ADDRESS from the template, annotated
with its group), health from the host's reports (unhealthy once silent past the timeout,
deleted after the grace period), and the sidecar's secret naming its key by its file on
that host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshpilot.api.identity import ObjectKey
from meshpilot.hosts.agent import AgentOptions, HostAgent
from meshpilot.security.ca_files import load_or_create_self_signed_ca
from meshpilot.security.join_tokens import JoinTokens
from meshpilot.security.proxy_tokens import BoundIdentity, ProxyTokens
from meshpilot.server.config_service import ConfigService
from meshpilot.server.host_registry import HostRegistry, JoinError, JoinRequest
from meshpilot.store import SqliteStore
from meshpilot.xds.translate.secrets import workload_secret

GROUP = {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadGroup",
         "metadata": {"name": "reviews", "namespace": "shop"},
         "spec": {"metadata": {"labels": {"app": "reviews"}, "annotations": {"team": "x"}},
                  "template": {"labels": {"version": "v2"}, "ports": {"http": 8080},
                               "serviceAccount": "reviews"}}}
ENTRY = ObjectKey("networking.istio.io", "WorkloadEntry", "shop", "reviews-10.77.0.2")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def new_registry(store: SqliteStore, tmp_path: Path) -> tuple[HostRegistry, Clock]:
    """A host registry holding :data:`GROUP`, on a clock the test moves."""
    config = ConfigService(store)
    assert config.apply([("g.json", json.dumps(GROUP))]).status == 200
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    clock = Clock()
    reg = HostRegistry(store, config, JoinTokens(tmp_path), ProxyTokens(b"k" * 32),
                       lambda: ca, timedelta(hours=1), lambda: "10.77.0.1:15012",
                       timeout=5.0, grace=30.0, clock=clock,
                       members_file=tmp_path / "hosts.json")
    return reg, clock


@pytest.fixture
def registry(store: SqliteStore, tmp_path: Path) -> Iterator[tuple[HostRegistry, Clock]]:
    reg, clock = new_registry(store, tmp_path)
    reg._started = clock.now - 1  # started a while ago
    yield reg, clock


def joined(reg: HostRegistry, address: str = "10.77.0.2") -> dict[str, Any]:
    token = reg.tokens.issue("shop/reviews").token
    return reg.join(JoinRequest(token, "shop/reviews", address, csr(), "/var/lib/h/key.pem"))


def healthy(store: SqliteStore) -> str | None:
    stored = store.get(ENTRY)
    if stored is None:
        return None
    return str(stored.body["status"]["conditions"][0]["status"])


def test_join_registers_the_entry_from_the_template(
        registry: tuple[HostRegistry, Clock], store: SqliteStore) -> None:
    reg, _ = registry
    answer = joined(reg)
    assert answer["entry"] == ENTRY.name
    assert answer["identity"] == "spiffe://cluster.local/ns/shop/sa/reviews"
    assert answer["xds"] == "10.77.0.1:15012"
    stored = store.get(ENTRY)
    assert stored is not None
    meta, spec = stored.body["metadata"], stored.body["spec"]
    assert meta["annotations"] == {"team": "x", "istio.io/autoRegistrationGroup": "reviews",
                                   "istio.io/workloadController": "meshpilot"}
    assert spec["address"] == "10.77.0.2"
    assert spec["labels"] == {"app": "reviews", "version": "v2"}
    assert spec["ports"] == {"http": 8080} and spec["serviceAccount"] == "reviews"
    leaf = x509.load_pem_x509_certificates(answer["certificateChain"].encode())[0]
    uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [u.value for u in uris] == [answer["identity"]]


def test_the_xds_token_binds_the_sidecar_the_agent_describes(
        registry: tuple[HostRegistry, Clock], tmp_path: Path) -> None:
    """The joined host's sidecar token is bound to its entry's identity (namespace, entry
    name, service account, the entry's labels): it opens xDS for the node the agent
    builds from the join answer, and for no node declaring another workload's metadata."""
    reg, _ = registry
    answer = joined(reg)
    ca = tmp_path / "agent-ca.pem"
    ca.write_bytes(Path("/etc/ssl/certs/ca-certificates.crt").read_bytes())
    agent = HostAgent(AgentOptions(server="https://10.77.0.1:8443", token="x",
                                   group="shop/reviews", address="10.77.0.2", ca_file=ca,
                                   state_dir=tmp_path / "agent", app_ports={"http": 9080}))
    agent.joined = answer
    node = agent.node()
    assert reg.proxy_tokens.verify_proxy(node, answer["xdsToken"])
    for claimed in ({"labels": {"app": "ratings", "version": "v2"}},
                    {"service_account": "ratings"}, {"namespace": "default"},
                    {"workload": "ratings-10.77.0.3"}, {"kind": "gateway"}):
        assert not reg.proxy_tokens.verify_proxy(replace(node, **claimed),
                                                 answer["xdsToken"])


def test_the_sidecar_secret_names_the_key_file_and_never_holds_a_key(
        registry: tuple[HostRegistry, Clock]) -> None:
    reg, _ = registry
    answer = joined(reg)
    credential = reg.credentials()[answer["nodeId"]]
    secret = workload_secret(credential)
    assert secret.tls_certificate.private_key.filename == "/var/lib/h/key.pem"
    assert not secret.tls_certificate.private_key.inline_bytes
    assert secret.tls_certificate.certificate_chain.inline_bytes.startswith(b"-----BEGIN")


def test_health_follows_reports_and_silence_removes_the_entry(
        registry: tuple[HostRegistry, Clock], store: SqliteStore) -> None:
    reg, clock = registry
    answer = joined(reg)
    reg.check()
    assert healthy(store) == "False"  # no report yet
    assert reg.report("shop", ENTRY.name, answer["hostToken"], ready=True)
    reg.check()
    assert healthy(store) == "True"
    assert reg.report("shop", ENTRY.name, answer["hostToken"], ready=False)
    reg.check()
    assert healthy(store) == "False"  # the probe fails
    assert reg.report("shop", ENTRY.name, answer["hostToken"], ready=True)
    reg.check()
    clock.now += 5.5  # past the timeout
    reg.check()
    assert healthy(store) == "False"
    clock.now += 25  # past the grace period
    reg.check()
    assert store.get(ENTRY) is None
    assert answer["nodeId"] not in reg.credentials()
    assert not reg.report("shop", ENTRY.name, answer["hostToken"], ready=True)


def test_a_report_needs_the_credential_of_that_entry(
        registry: tuple[HostRegistry, Clock]) -> None:
    reg, _ = registry
    first = joined(reg)
    joined(reg, "10.77.0.3")
    assert not reg.report("shop", ENTRY.name, "0" * 64, ready=True)
    assert not reg.report("shop", "reviews-10.77.0.3", first["hostToken"], ready=True)


@pytest.mark.parametrize(("group", "status"), [("shop/nope", 404), ("shop", 400)])
def test_join_to_a_missing_group_spends_nothing(
        registry: tuple[HostRegistry, Clock], group: str, status: int) -> None:
    reg, _ = registry
    token = reg.tokens.issue(group).token
    with pytest.raises(JoinError) as refused:
        reg.join(JoinRequest(token, group, "10.77.0.2", csr(), "/k"))
    assert refused.value.status == status
    reg.tokens.check(token, group)  # still unspent


def test_without_a_valid_token_nothing_else_is_looked_at(
        registry: tuple[HostRegistry, Clock]) -> None:
    """The token is checked first: a caller without one learns nothing of the groups
    (a missing group and a present one answer alike) and gets no signing done."""
    reg, _ = registry
    token = reg.tokens.issue("shop/reviews").token
    for group in ("shop/nope", "shop/reviews-2"):
        with pytest.raises(JoinError, match=f"not issued for WorkloadGroup {group}") as no:
            reg.join(JoinRequest(token, group, "10.77.0.2", b"not a csr", "/k"))
        assert no.value.status == 403


def test_a_bad_csr_or_address_is_refused_and_spends_nothing(
        registry: tuple[HostRegistry, Clock], store: SqliteStore) -> None:
    reg, _ = registry
    token = reg.tokens.issue("shop/reviews").token
    with pytest.raises(JoinError, match="CSR was refused"):
        reg.join(JoinRequest(token, "shop/reviews", "10.77.0.2", b"not a csr", "/k"))
    with pytest.raises(JoinError) as refused:
        reg.join(JoinRequest(token, "shop/reviews", "not/an address", csr(), "/k"))
    assert refused.value.status == 422
    reg.join(JoinRequest(token, "shop/reviews", "10.77.0.2", csr(), "/k"))
    assert store.get(ENTRY) is not None


def test_a_restarted_control_plane_keeps_its_members(
        registry: tuple[HostRegistry, Clock], store: SqliteStore) -> None:
    """Members survive a restart: their sidecars keep their secret and their reports are
    taken; the file holds no key and is owner-only."""
    reg, clock = registry
    answer = joined(reg)
    assert reg.members_file is not None
    assert reg.members_file.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" not in reg.members_file.read_text()
    again = HostRegistry(reg.store, reg.config, reg.tokens, reg.proxy_tokens, reg.ca,
                         reg.cert_ttl, reg.xds_address, timeout=5.0, grace=30.0,
                         clock=clock, members_file=reg.members_file)
    assert reg.report("shop", ENTRY.name, answer["hostToken"], ready=True)
    reg.check()
    assert healthy(store) == "True"
    again._started = clock.now + 5.0  # what start() sets: one timeout to report in
    clock.now += 4.0
    again.check()
    assert healthy(store) == "True"  # kept while the host could not report yet
    credential = again.credentials()[answer["nodeId"]]
    assert credential.key_file == "/var/lib/h/key.pem"
    assert credential.roots_pem == reg.ca().trust_bundle.pem
    assert again.report("shop", ENTRY.name, answer["hostToken"], ready=True)
    again.check()
    assert healthy(store) == "True"


def test_renewal_issues_for_the_same_identity_and_a_new_key_file(
        registry: tuple[HostRegistry, Clock]) -> None:
    reg, _ = registry
    answer = joined(reg)
    renewed = reg.renew("shop", ENTRY.name, answer["hostToken"], csr(), "/var/lib/h/key-1.pem")
    assert renewed is not None
    leaf = x509.load_pem_x509_certificates(renewed["certificateChain"].encode())[0]
    uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [u.value for u in uris] == [answer["identity"]]
    credential = reg.credentials()[answer["nodeId"]]
    assert credential.key_file == "/var/lib/h/key-1.pem"
    assert credential.chain_pem == renewed["certificateChain"].encode()
    assert reg.renew("shop", ENTRY.name, "0" * 64, csr(), "/k") is None


def test_deleting_the_entry_makes_the_host_leave(
        registry: tuple[HostRegistry, Clock], store: SqliteStore) -> None:
    reg, _ = registry
    answer = joined(reg)
    assert reg.config.delete([ENTRY]).status == 200
    reg.check()
    assert answer["nodeId"] not in reg.credentials()
    assert not reg.report("shop", ENTRY.name, answer["hostToken"], ready=True)
    assert store.get(ENTRY) is None


def test_a_reported_sidecars_counters_are_read_as_its_agent_describes_it(
        registry: tuple[HostRegistry, Clock]) -> None:
    """The counters a host reports become a telemetry source named as its sidecar
    introduces itself to xDS (entry name, group labels, the group's ports inbound);
    a report without counters keeps the last ones."""
    reg, _ = registry
    answer = joined(reg)
    assert answer["statsQuery"]["format"] == "json"
    assert reg.sidecar_stats() == []
    assert reg.report("shop", ENTRY.name, answer["hostToken"], True, (41, b'{"stats": []}'))
    assert reg.report("shop", ENTRY.name, answer["hostToken"], True)
    ((node, epoch, body),) = reg.sidecar_stats()
    assert (epoch, body) == (41, b'{"stats": []}')
    assert node.id == answer["nodeId"] and node.kind == "sidecar"
    assert (node.name, node.workload, node.ip) == (ENTRY.name, ENTRY.name, "10.77.0.2")
    assert node.labels == {"app": "reviews", "version": "v2"}
    assert [(p.name, p.container_port) for p in node.inbound] == [("http", 8080)]


class ReboundTokens(ProxyTokens):
    """The same key under another proxy token binding, as an upgrade may bring: host
    credentials (plain subjects) verify as before, sidecar tokens are others."""

    def issue(self, node_id: str, identity: BoundIdentity) -> str:
        return super().issue(node_id + "~rebound", identity)


def test_a_report_answers_the_sidecar_token_as_issued_now(
        registry: tuple[HostRegistry, Clock], tmp_path: Path) -> None:
    """What a report answers besides the replicas: the host's sidecar token as the
    control plane issues it now, the join's while nothing changed, and after an upgrade
    to another binding the new one (its agent restarts the sidecar with it,
    :mod:`meshpilot.hosts.agent`), which opens xDS for the same node; nothing for another
    entry's credential."""
    reg, clock = registry
    answer = joined(reg)
    ca = tmp_path / "agent-ca.pem"
    ca.write_bytes(Path("/etc/ssl/certs/ca-certificates.crt").read_bytes())
    assert reg.sidecar_token("shop", ENTRY.name, answer["hostToken"]) == answer["xdsToken"]
    assert reg.sidecar_token("shop", ENTRY.name, "f" * 64) is None
    upgraded = HostRegistry(reg.store, reg.config, reg.tokens, ReboundTokens(b"k" * 32),
                            reg.ca, reg.cert_ttl, reg.xds_address, timeout=5.0, grace=30.0,
                            clock=clock, members_file=reg.members_file)
    token = upgraded.sidecar_token("shop", ENTRY.name, answer["hostToken"])
    assert token is not None and token != answer["xdsToken"]
    agent = HostAgent(AgentOptions(server="https://10.77.0.1:8443", token="x",
                                   group="shop/reviews", address="10.77.0.2", ca_file=ca,
                                   state_dir=tmp_path / "agent", app_ports={"http": 9080}))
    agent.joined = answer
    assert agent.take_token({"xdsToken": token})  # no sidecar runs here: taken only
    assert upgraded.proxy_tokens.verify_proxy(agent.node(), agent.joined["xdsToken"])
    assert not reg.proxy_tokens.verify_proxy(agent.node(), agent.joined["xdsToken"])
