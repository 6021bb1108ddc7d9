"""Root CA rotation, the pure parts: the three steps and their refusals
(:class:`RootRotation`), how the proxies' credentials follow them
(:class:`WorkloadCertificates`), and the rotation saved on disk (:class:`RootStore`)."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from tests.unit.security_pki import openssl, plugged_ca_directory

from meshpilot.security.ca import CertificateAuthority
from meshpilot.security.ca_files import (
    load_or_create_self_signed_ca,
    load_plugged_ca,
    new_self_signed_ca,
)
from meshpilot.security.certs import fingerprint
from meshpilot.security.root_rotation import Phase, Refusal, RootRotation, RotationRefused
from meshpilot.security.root_store import RootStore, RootStoreError, ca_id
from meshpilot.security.workload_certs import CredentialSubject, WorkloadCertificates

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
NODES = [CredentialSubject(f"node-{i}", "shop", "web") for i in range(4)]


def new_ca(name: str = "meshpilot root CA next") -> CertificateAuthority:
    return new_self_signed_ca(now=T0 - timedelta(days=1), common_name=name)


def refusal_of(step: object, *args: object) -> RotationRefused:
    with pytest.raises(RotationRefused) as exc:
        step(*args)  # type: ignore[operator]
    return exc.value


def leaf_of(chain_pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificates(chain_pem)[0]


# --- the steps --------------------------------------------------------------------------


def test_trust_switch_retire_moves_the_bundle_and_the_issuer() -> None:
    old, new = new_ca("old root"), new_ca("new root")
    steady = RootRotation(old)
    assert steady.phase is Phase.STEADY and steady.retirable() == ()

    trusted = steady.trust(new)
    assert trusted.phase is Phase.TRUSTED
    assert trusted.bundle.roots == (old.root, new.root)
    assert trusted.issuing.signing_cert == old.signing_cert  # nothing issued from new yet
    assert trusted.pending is not None and trusted.pending.root == new.root

    switched = trusted.switch()
    assert switched.phase is Phase.SWITCHED and switched.pending is None
    assert switched.issuing.signing_cert == new.signing_cert
    assert switched.bundle.roots == (old.root, new.root)  # both trusted meanwhile
    assert switched.retirable() == (old.root,)

    retired = switched.retire({new.root: 5})
    assert retired.phase is Phase.STEADY and retired.bundle.roots == (new.root,)
    assert steady.bundle.roots == (old.root,)  # values: nothing changed in place


def test_a_step_out_of_order_is_refused() -> None:
    old, new = new_ca("old root"), new_ca("new root")
    steady = RootRotation(old)
    assert refusal_of(steady.switch).refusal is Refusal.OUT_OF_ORDER  # nothing trusted yet
    assert refusal_of(steady.trust, old).refusal is Refusal.OUT_OF_ORDER  # already trusted
    trusted = steady.trust(new)
    again = refusal_of(trusted.trust, new_ca("third root"))
    assert again.refusal is Refusal.OUT_OF_ORDER and "switch" in again.message
    assert refusal_of(trusted.switch, old).refusal is Refusal.OUT_OF_ORDER  # issuing already


def test_retiring_the_only_root_or_a_root_in_use_is_refused() -> None:
    old, new = new_ca("old root"), new_ca("new root")
    only = refusal_of(RootRotation(old).retire, {})
    assert only.refusal is Refusal.ROOT_NEEDED and "old root" in only.message
    trusted = RootRotation(old).trust(new)
    # with a pending CA, the old root is still the one issuing: nothing to retire
    assert refusal_of(trusted.retire, {}).refusal is Refusal.ROOT_NEEDED
    switched = trusted.switch()
    busy = refusal_of(switched.retire, {old.root: 3, new.root: 1})
    assert busy.refusal is Refusal.ROOT_IN_USE and "3 chain to" in busy.message
    assert switched.retire({old.root: 0, new.root: 4}).bundle.roots == (new.root,)


def test_switching_to_a_ca_whose_root_is_not_trusted_is_refused(tmp_path: Path) -> None:
    plugged = load_plugged_ca(plugged_ca_directory(tmp_path))
    refused = refusal_of(RootRotation(new_ca("old root")).trust(new_ca()).switch, plugged)
    assert refused.refusal is Refusal.NOT_TRUSTED and "Plugged Root" in refused.message


def test_a_plugged_intermediate_is_trusted_by_its_root_then_switched_to(tmp_path: Path
                                                                       ) -> None:
    old = new_ca("old root")
    plugged = load_plugged_ca(plugged_ca_directory(tmp_path))
    switched = RootRotation(old).trust(plugged).switch()
    assert switched.issuing.signing_cert == plugged.signing_cert  # the intermediate
    assert switched.issuing.root == plugged.root and switched.retirable() == (old.root,)


# --- the proxies' credentials -----------------------------------------------------------


def test_trust_gives_every_proxy_the_new_bundle_and_keeps_its_certificate() -> None:
    old, new = new_ca("old root"), new_ca("new root")
    certs = WorkloadCertificates(old)
    before = certs.current(NODES, T0)
    certs.trust(RootRotation(old).trust(new).bundle)
    after = certs.current(NODES, T0 + timedelta(seconds=1))
    for node in NODES:
        assert after[node.node_id].serial == before[node.node_id].serial
        assert after[node.node_id].key_pem == before[node.node_id].key_pem
        assert x509.load_pem_x509_certificates(after[node.node_id].roots_pem) == [
            old.root, new.root]
    assert certs.issued == len(NODES)
    assert certs.roots_in_use() == {old.root: len(NODES)}


def test_switch_reissues_from_the_new_ca_spread_over_the_window() -> None:
    old, new = new_ca("old root"), new_ca("new root")
    switched = RootRotation(old).trust(new).switch()
    certs = WorkloadCertificates(old)
    certs.current(NODES, T0)
    last = certs.switch(switched.issuing, spread=timedelta(seconds=8), now=T0)
    assert last == T0 + timedelta(seconds=6)  # four proxies, two seconds apart
    assert certs.awaiting_reissue() == (4, last)

    held = certs.current(NODES, T0)  # the first is due at once
    assert certs.roots_in_use() == {new.root: 1, old.root: 3}
    assert leaf_of(held["node-0"].chain_pem).issuer == new.root.subject
    assert certs.next_renewal() == T0 + timedelta(seconds=2)

    held = certs.current(NODES, T0 + timedelta(seconds=3))
    assert certs.roots_in_use() == {new.root: 2, old.root: 2}
    held = certs.current(NODES, T0 + timedelta(seconds=6))
    assert certs.roots_in_use() == {new.root: 4} and certs.awaiting_reissue() == (0, None)
    for credential in held.values():
        leaf_of(credential.chain_pem).verify_directly_issued_by(new.root)
    assert certs.issued == 8
    assert certs.next_renewal() == min(c.renew_at for c in held.values())  # renewals only


def test_a_proxy_that_comes_during_the_spread_gets_the_new_ca_at_once() -> None:
    old, new = new_ca("old root"), new_ca("new root")
    certs = WorkloadCertificates(old)
    certs.current(NODES[:1], T0)
    certs.switch(RootRotation(old).trust(new).switch().issuing, spread=timedelta(minutes=1),
                 now=T0)
    newcomer = CredentialSubject("node-new", "shop", "web")
    held = certs.current([*NODES[:1], newcomer], T0)
    assert leaf_of(held["node-new"].chain_pem).issuer == new.root.subject


# --- on disk ----------------------------------------------------------------------------


def test_a_saved_rotation_loads_back_with_its_keys_private(tmp_path: Path) -> None:
    old = load_or_create_self_signed_ca(tmp_path / "ca")
    trusted = RootRotation(old).trust(new_ca())
    store = RootStore(tmp_path / "ca-rotation")
    assert store.load(trust_domain="cluster.local") is None
    store.save(trusted)
    loaded = store.load(trust_domain="cluster.local")
    assert loaded is not None and loaded.phase is Phase.TRUSTED
    assert loaded.bundle == trusted.bundle
    assert loaded.issuing.signing_cert == old.signing_cert
    assert loaded.pending is not None and trusted.pending is not None
    assert loaded.pending.signing_cert == trusted.pending.signing_cert
    assert stat.S_IMODE((tmp_path / "ca-rotation").stat().st_mode) == 0o700
    for ca in (old, trusted.pending):
        key = tmp_path / "ca-rotation" / "cas" / ca_id(ca) / "ca-key.pem"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # the key on disk is the one that signs (openssl agrees it belongs to the cert)
    directory = tmp_path / "ca-rotation" / "cas" / ca_id(trusted.pending)
    modulus = [openssl("pkey", "-in", directory / "ca-key.pem", "-pubout").stdout,
               openssl("x509", "-in", directory / "ca-cert.pem", "-noout", "-pubkey").stdout]
    assert modulus[0] == modulus[1]


def test_a_retired_ca_leaves_no_key_behind(tmp_path: Path) -> None:
    old, new = new_ca("old root"), new_ca("new root")
    store = RootStore(tmp_path / "ca-rotation")
    trusted = RootRotation(old).trust(new)
    store.save(trusted)
    switched = trusted.switch()
    store.save(switched)
    store.save(switched.retire({}))
    names = [p.name for p in (tmp_path / "ca-rotation" / "cas").iterdir()]
    assert names == [ca_id(new)]
    state = json.loads(store.state_file.read_text())
    assert state["issuing"] == ca_id(new) and state["pending"] is None
    loaded = store.load(trust_domain="cluster.local")
    assert loaded is not None and loaded.bundle.roots == (new.root,)


def test_a_damaged_saved_rotation_stops_the_start_with_the_reason(tmp_path: Path) -> None:
    store = RootStore(tmp_path / "ca-rotation")
    store.save(RootRotation(new_ca()))
    state = json.loads(store.state_file.read_text())
    store.state_file.write_text(json.dumps({**state, "issuing": "../../etc"}))
    with pytest.raises(RootStoreError, match="names no CA directory"):
        store.load(trust_domain="cluster.local")
    store.state_file.write_text("{not json")
    with pytest.raises(RootStoreError, match="cannot be read"):
        store.load(trust_domain="cluster.local")
    other = new_ca("another")
    store.state_file.write_text(json.dumps({**state, "bundle": other.trust_bundle.pem.decode()}))
    with pytest.raises(RootStoreError, match="must contain the CA's own root"):
        store.load(trust_domain="cluster.local")


def test_fingerprints_are_written_as_openssl_writes_them(tmp_path: Path) -> None:
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    printed = openssl("x509", "-in", tmp_path / "ca" / "ca-cert.pem", "-noout",
                      "-fingerprint", "-sha256").stdout
    assert printed.strip().split("=", 1)[1] == fingerprint(ca.root)
