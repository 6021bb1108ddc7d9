"""What control-plane replicas on one etcd share beyond the config objects, on a real
etcd: the directory of live replicas, a secret made once for all, and joined hosts
(membership at one replica, reports at any, health judged by the leader alone).

Follows etcd's own recipes (a key under a lease that vanishes with its holder, as
service discovery on etcd does; a create-if-absent transaction) and Istio's
auto-registration health (an entry whose proxy stops reporting turns unhealthy),
here with the report taken by one replica and judged at another.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.conftest import wait_for
from tests.etcd_cluster import Cluster

from meshpilot.api.identity import ObjectKey
from meshpilot.security.ca_files import load_or_create_self_signed_ca
from meshpilot.security.join_tokens import JoinRefused, JoinTokens, digest
from meshpilot.security.options import CA_DIR, SecurityOptions
from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.server.config_service import ConfigService
from meshpilot.server.host_registry import HostRegistry, JoinRequest
from meshpilot.server.replica_wiring import ReplicaState
from meshpilot.server.shared_join_tokens import SharedJoinTokens
from meshpilot.statedir import StateDir
from meshpilot.store.etcd import EtcdStore
from meshpilot.store.replicas import ReplicaDirectory
from meshpilot.store.shared import SharedRecords

GROUP = {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadGroup",
         "metadata": {"name": "reviews", "namespace": "shop"},
         "spec": {"metadata": {"labels": {"app": "reviews"}},
                  "template": {"ports": {"http": 8080}, "serviceAccount": "reviews"}}}
ENTRY = ObjectKey("networking.istio.io", "WorkloadEntry", "shop", "reviews-10.77.0.2")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def shared(etcd_server: Cluster, etcd_prefix: str) -> Iterator[list[SharedRecords]]:
    records = [SharedRecords(etcd_server.endpoints, etcd_prefix) for _ in range(2)]
    yield records
    for r in records:
        r.close()


def test_the_directory_names_every_live_replica_and_forgets_one_that_stops(
        shared: list[SharedRecords]) -> None:
    """Each replica's record lives under its own lease: both see both; one that stops
    revokes its lease and leaves every directory within a poll."""
    seen: list[list[dict[str, Any]]] = []
    one = ReplicaDirectory(shared[0], "one", poll=0.1)
    two = ReplicaDirectory(shared[1], "two", poll=0.1)
    one.start({"api": "https://10.77.0.1:1", "xds_tls": "10.77.0.1:2"}, seen.append)
    two.start({"api": "https://10.77.0.1:3", "xds_tls": "10.77.0.1:4"}, lambda r: None)
    try:
        wait_for(lambda: len(one.replicas()) == 2, 5, message="one sees two")
        assert [r["identity"] for r in two.replicas()] == ["one", "two"]
        assert one.replicas()[1] == {"identity": "two", "api": "https://10.77.0.1:3",
                                     "xds_tls": "10.77.0.1:4"}
        assert [len(s) for s in seen][:2] == [1, 2]  # told of each change
        two.update(leading=True, revision=12)  # written by its thread, read by the other
        wait_for(lambda: one.replicas()[1].get("leading") is True, 5,
                 message="one reads what two says of itself")
        assert one.replicas()[1]["revision"] == 12
        two.stop()
        wait_for(lambda: [r["identity"] for r in one.replicas()] == ["one"], 5,
                 message="a stopped replica leaves the directory")
    finally:
        one.stop()
        two.stop()


def test_a_shared_secret_is_made_once_whoever_asks_first(
        shared: list[SharedRecords]) -> None:
    first = shared[0].secret("k", b"made-by-one")
    second = shared[1].secret("k", b"made-by-two")
    assert first == second == b"made-by-one"


def test_replicas_without_a_plugged_ca_issue_from_the_one_root_made_first(
        shared: list[SharedRecords], tmp_path: Path) -> None:
    """The first replica's self-signed root is the one every replica uses: a second
    replica's own root (made before it joined) is replaced by it, key 0600."""
    states = [StateDir(tmp_path / name) for name in ("one", "two")]
    for state in states:
        state.create()
    load_or_create_self_signed_ca(states[1].root / CA_DIR)  # two had a root of its own
    for state, records in zip(states, shared, strict=True):
        ReplicaState(records).share_ca(state, SecurityOptions())
    one, two = (state.root / CA_DIR for state in states)
    for name in ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert (two / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    assert load_or_create_self_signed_ca(two).root == load_or_create_self_signed_ca(one).root


def csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def registries(etcd_server: Cluster, etcd_prefix: str, shared: list[SharedRecords],
               tmp_path: Path) -> Iterator[tuple[list[HostRegistry], EtcdStore, Clock]]:
    """Two replicas' registries on one etcd, one CA and one proxy-token key (as the
    replicas share them), a fake clock each."""
    store = EtcdStore(etcd_server.endpoints, prefix=etcd_prefix)
    config = ConfigService(store)
    assert config.apply([("g.json", json.dumps(GROUP))]).status == 200
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    clock = Clock()
    key = shared[0].secret("proxy-token-key", b"k" * 32)
    regs = [HostRegistry(store, config, JoinTokens(tmp_path / name), ProxyTokens(key),
                         lambda: ca, timedelta(hours=1), lambda: "10.77.0.1:15012",
                         timeout=5.0, grace=30.0, clock=clock,
                         members_file=tmp_path / name / "hosts.json", shared=records)
            for name, records in zip(("a", "b"), shared, strict=True)]
    for reg in regs:
        reg._started = clock.now - 1
    yield regs, store, clock
    store.close()


def condition(store: EtcdStore) -> str | None:
    stored = store.get(ENTRY)
    if stored is None:
        return None
    return str(stored.body["status"]["conditions"][0]["status"])


def test_a_host_joined_at_one_replica_reports_to_another_and_the_leader_judges(
        registries: tuple[list[HostRegistry], EtcdStore, Clock]) -> None:
    """A joins the host; B serves its sidecar's secret once synced and takes its report;
    A (the leader here) counts that report and marks the entry healthy, then unhealthy
    once no replica has heard from the host for the timeout. Deleting the entry at A
    makes B forget the host: its next report is refused."""
    (a, b), store, clock = registries
    token = a.tokens.issue("shop/reviews").token
    answer = a.join(JoinRequest(token, "shop/reviews", "10.77.0.2", csr(), "/h/key.pem"))
    node = answer["nodeId"]
    assert node not in b.credentials()
    b.sync()
    assert b.credentials()[node].chain_pem == answer["certificateChain"].encode()
    assert b.credentials()[node].key_file == "/h/key.pem"

    assert b.report("shop", ENTRY.name, answer["hostToken"], ready=True)
    assert not b.report("shop", ENTRY.name, "f" * 64, ready=True)  # not its credential
    clock.now += 1
    a.sync()
    a.check()
    assert condition(store) == "True"

    clock.now += 4  # 5 s after the report: still within the timeout
    a.sync()
    a.check()
    assert condition(store) == "True"
    clock.now += 2  # silent past the timeout, at every replica
    a.sync()
    a.check()
    assert condition(store) == "False"

    assert b.report("shop", ENTRY.name, answer["hostToken"], ready=True)
    a.sync()  # a new report, whatever the clocks say: counted from now
    a.check()
    assert condition(store) == "True"

    a.config.delete([ENTRY])
    a.check()  # the leader forgets the member, and so does the shared state
    b.sync()
    assert node not in b.credentials()
    assert not b.report("shop", ENTRY.name, answer["hostToken"], ready=True)


def test_a_report_to_a_replica_that_has_not_synced_yet_is_taken(
        registries: tuple[list[HostRegistry], EtcdStore, Clock]) -> None:
    """The host reports to B right after joining at A, before B's next sync round: B
    looks the member up in the shared state instead of refusing it."""
    (a, b), _store, _clock = registries
    token = a.tokens.issue("shop/reviews").token
    answer = a.join(JoinRequest(token, "shop/reviews", "10.77.0.2", csr(), "/h/key.pem"))
    started = time.monotonic()
    assert b.report("shop", ENTRY.name, answer["hostToken"], ready=True)
    assert time.monotonic() - started < 5


def test_a_join_token_made_at_one_replica_admits_one_join_at_any(
        shared: list[SharedRecords]) -> None:
    """A token issued at replica one is checked and spent at replica two, and then is
    refused at both; a stale one, one for another group and an unknown one are refused
    with the same words as on one control plane. Two replicas spending the same token
    at once: exactly one succeeds (etcd's compare-and-swap on the token's record)."""
    one, two = SharedJoinTokens(shared[0]), SharedJoinTokens(shared[1])
    issued = one.issue("shop/reviews")
    assert shared[0].items("join-tokens").keys() == {digest(issued.token)}  # hash only
    two.check(issued.token, "shop/reviews")
    two.spend(issued.token, "shop/reviews")
    for replica in (one, two):
        with pytest.raises(JoinRefused, match="already used"):
            replica.check(issued.token, "shop/reviews")

    past = datetime.now(UTC) - timedelta(minutes=5)
    stale = one.issue("shop/reviews", timedelta(seconds=30), now=past)
    with pytest.raises(JoinRefused, match="expired"):
        two.spend(stale.token, "shop/reviews")
    other = one.issue("shop/reviews")
    with pytest.raises(JoinRefused, match="not issued for WorkloadGroup shop/ratings"):
        two.spend(other.token, "shop/ratings")
    with pytest.raises(JoinRefused, match="not one this control plane issued"):
        two.check("mpjoin_" + "x" * 43, "shop/reviews")

    for _ in range(5):
        token = one.issue("shop/reviews").token
        outcomes: list[str] = []

        def spend(replica: SharedJoinTokens, token: str = token,
                  outcomes: list[str] = outcomes) -> None:
            try:
                replica.spend(token, "shop/reviews")
                outcomes.append("spent")
            except JoinRefused:
                outcomes.append("refused")

        threads = [threading.Thread(target=spend, args=(r,)) for r in (one, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert sorted(outcomes) == ["refused", "spent"]
