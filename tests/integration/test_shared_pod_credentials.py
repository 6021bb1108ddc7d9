"""A joined pod's sidecar certificate, issued at the replica its host reports to, is
served by every replica on a real etcd: the sidecar's xDS stream may be at any of them.

Follows Istio's model of one CA answering every istiod replica's proxies (any replica
serves any workload's certificate) and etcd's recipe for state shared between service
instances (a record per key, read by prefix); withdrawn once the pod is gone, as the
issuing replica forgets the credential.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tests.etcd_cluster import Cluster
from tests.unit.test_host_pods import HOST_A, NID, dep, reported
from tests.unit.test_host_registry import Clock, csr

from meshpilot.security.ca_files import load_or_create_self_signed_ca
from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.server.host_pods import UNREPORTED_SECONDS, HostPods
from meshpilot.server.shared_pod_credentials import SharedPodCredentials
from meshpilot.store.shared import SharedRecords


@pytest.fixture
def replicas(etcd_server: Cluster, etcd_prefix: str, tmp_path: Path
             ) -> Iterator[tuple[list[HostPods], Clock, list[int]]]:
    """Two replicas' books of joined pods over one etcd and one CA (as replicas share
    their root), each with its own etcd client; how often each told its mesh."""
    ca = load_or_create_self_signed_ca(tmp_path / "ca")
    clock = Clock()
    records = [SharedRecords(etcd_server.endpoints, etcd_prefix) for _ in range(2)]
    told = [0, 0]

    def tell(i: int) -> None:
        told[i] += 1

    books = [HostPods(ProxyTokens(b"k" * 32), lambda: ca, timedelta(hours=1), timeout=5.0,
                      clock=clock, changed=lambda i=i: tell(i),
                      shared=SharedPodCredentials(r)) for i, r in enumerate(records)]
    for book in books:
        book.place([dep("web", nodeName="node-b")])
    yield books, clock, told
    for r in records:
        r.close()


def test_a_pod_certificate_issued_at_one_replica_is_served_by_the_other(
        replicas: tuple[list[HostPods], Clock, list[int]]) -> None:
    (one, two), clock, told = replicas
    one.sync(HOST_A, "node-b", [], {})
    answer = one.credential(HOST_A, "node-b", {
        "namespace": "default", "deployment": "web", "nodeId": NID,
        "csr": csr().decode(), "keyFile": "/var/lib/h/pod.key"})
    one.sync(HOST_A, "node-b", [reported()], {})
    assert NID in one.credentials()
    assert NID not in two.credentials()  # not taken yet

    before = told[1]
    two.sync_shared()
    held = two.credentials()[NID]
    assert held.chain_pem.decode() == answer["certificateChain"]
    assert held.key_file == "/var/lib/h/pod.key" and held.key_pem == b""  # never the key
    assert held.roots_pem == one.credentials()[NID].roots_pem
    assert told[1] == before + 1  # its mesh rebuilt to serve it
    two.sync_shared()
    assert told[1] == before + 1  # nothing new: no rebuild

    # the pod is gone at its host: the issuing replica forgets and withdraws it, and the
    # other stops serving it at its next round
    clock.now += UNREPORTED_SECONDS + 1
    one.sync(HOST_A, "node-b", [], {})
    assert NID not in one.credentials()
    one.sync_shared()
    two.sync_shared()
    assert NID not in two.credentials()
