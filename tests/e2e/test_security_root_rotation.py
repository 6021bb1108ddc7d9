"""Root CA rotation end to end, as Istio users rotate a plugged-in CA: the trust bundle
carries the old and the new root, workloads are re-issued from the new CA, then the old
root is removed. Real Envoy sidecars speaking mutual TLS (STRICT), the real
``meshpilot ca`` CLI for every step, the real ``openssl s_client`` to look at what a pod
serves afterwards, and each proxy's own admin ``/config_dump`` (``proxy-config
secret``) for what it holds at each step.

The scene, after Istio's tasks: ``httpbin`` and ``sleep`` in namespace ``foo``, called
from the mesh proxy and from ``sleep``'s sidecar. A DestinationRule closes each
connection to ``httpbin`` after one request, so every request is a new mutual TLS
handshake: a connection kept open from before a step would prove nothing about it.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from meshpilot.proxy.admin import AdminClient
from tests.builders import destination_rule
from tests.conftest import run_cli
from tests.e2e.mesh import Mesh, admin_at
from tests.e2e.scenario import Given, Then, When
from tests.e2e.security import (
    peer_authentication,
    pod,
    pod_address,
    s_client,
    sidecar_proxy,
    url,
    workload,
)

FOO = "foo"
HTTPBIN = url("httpbin", FOO)
SCENE = (*workload("httpbin", FOO, service_account="httpbin"),
         *workload("sleep", FOO, service_account="sleep"),
         destination_rule("httpbin.foo.svc.cluster.local", namespace=FOO, traffic_policy={
             "connectionPool": {"http": {"maxRequestsPerConnection": 1}}}))
PROXIES = 4  # the mesh proxy, the ingress gateway, httpbin's and sleep's sidecars


def ca(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("ca", *args, state_dir=state)


def ca_step(state: Path, *args: str) -> dict[str, Any]:
    """``meshpilot ca <args> -o json``, which must succeed; what it answers."""
    done = ca(state, *args, "-o", "json")
    assert done.returncode == 0, done.stderr + done.stdout
    return dict(json.loads(done.stdout))


def held(mesh: Mesh, pod_name: str) -> dict[str, Any]:
    """What the pod's Envoy holds: the serials of its ROOTCA roots, and the root its
    workload certificate chains to."""
    items = {i["name"]: i for i in mesh.proxy_config(pod_name, "secret")}
    return {"roots": [c["serialNumber"] for c in items["ROOTCA"]["certificates"]],
            "chainsTo": items["default"]["trustedRoot"]}


def connections_opened(callers: list[AdminClient]) -> int:
    """How many connections the callers' Envoys have opened to httpbin (each one a
    handshake with its sidecar)."""
    return int(sum(value for admin in callers
                   for name, value in admin.stats_dict(r"httpbin\.foo.*upstream_cx_total$").items()
                   if name.startswith("cluster.outbound|")))


def serial(root: dict[str, Any]) -> str:
    return str(root["serialNumber"])


@pytest.mark.timeout(150)
def test_the_root_is_rotated_under_mtls_load_without_a_failed_request(
        mesh: Mesh, given: Given, when: When, then: Then, tmp_path: Path) -> None:
    """Istio's plugged-in CA rotation, in three commands while two callers send requests
    over mutual TLS (STRICT), each request on a new connection: ``ca trust`` gives every
    proxy the old and the new root and re-issues nothing; ``ca switch`` re-issues every
    workload certificate from the new CA over 2 s; ``ca retire`` leaves only the new
    root. No request fails; afterwards httpbin serves a certificate that verifies
    against the new root and not the old one, and no proxy trusts the old root."""
    given.applied(*SCENE, peer_authentication(FOO, "STRICT"))
    state = mesh.cp.state_dir
    httpbin = pod(mesh, FOO, "httpbin")["metadata"]["name"]
    before = ca_step(state, "status")
    assert before["phase"] == "Steady" and len(before["roots"]) == 1
    old = before["roots"][0]

    callers = [mesh.proxy_admin(),
               admin_at(pod(mesh, FOO, "sleep")["status"]["sidecarAdminSocket"])]
    opened = [connections_opened(callers)]

    via = [mesh.mesh_proxy, sidecar_proxy(mesh, FOO, "sleep")]
    with when.traffic(HTTPBIN, via=via, workers=2, rate=40, max_seconds=35,
                      max_requests=1400) as load:
        load.wait_for_requests(40)
        opened.append(connections_opened(callers))
        trusted = ca_step(state, "trust")
        assert trusted["phase"] == "Trusted" and trusted["synced"], trusted
        new = next(r for r in trusted["roots"] if r["role"] == "pending")
        assert held(mesh, httpbin) == {"roots": [serial(old), serial(new)],
                                       "chainsTo": old["subject"]}  # nothing re-issued

        load.wait_for_requests(40)
        opened.append(connections_opened(callers))
        switched = ca_step(state, "switch", "--spread", "2s", "--wait")
        assert switched["phase"] == "Switched", switched
        assert [(r["role"], r["workloadCertificates"]) for r in switched["roots"]] == [
            ("old", 0), ("issuing", PROXIES)]
        assert held(mesh, httpbin) == {"roots": [serial(old), serial(new)],
                                       "chainsTo": new["subject"]}

        load.wait_for_requests(40)
        opened.append(connections_opened(callers))
        retired = ca_step(state, "retire")
        assert retired["phase"] == "Steady" and retired["synced"], retired
        load.wait_for_requests(40)
        opened.append(connections_opened(callers))
    then.no_request_failed(load, more_than=160)
    between_steps = [after - before for before, after in itertools.pairwise(opened)]
    assert min(between_steps) >= 30, opened  # new handshakes before, and after, each step

    assert [serial(r) for r in retired["roots"]] == [serial(new)]
    assert held(mesh, httpbin) == {"roots": [serial(new)], "chainsTo": new["subject"]}
    for pod_name in (httpbin, pod(mesh, FOO, "sleep")["metadata"]["name"], "mesh-proxy"):
        assert serial(old) not in held(mesh, pod_name)["roots"], pod_name

    new_root, old_root = tmp_path / "new-root.pem", tmp_path / "old-root.pem"
    new_root.write_text(new["pem"])
    old_root.write_text(old["pem"])
    served = s_client(pod_address(mesh, FOO, "httpbin"), ca_file=new_root)
    assert served.verified, served.stdout
    served.server_certificate.verify_directly_issued_by(
        x509.load_pem_x509_certificate(new["pem"].encode()))
    by_old = s_client(pod_address(mesh, FOO, "httpbin"), ca_file=old_root)
    assert not by_old.verified and "Verify return code: 0 (ok)" not in by_old.stdout


def test_refused_steps_change_nothing_and_a_restart_resumes_the_rotation(
        mesh: Mesh, when: When, tmp_path: Path) -> None:
    """The CLI prints a refused step's code and why, and nothing changes; a control
    plane killed mid-rotation comes back in the same phase, with the same new root
    pending, and finishes the rotation."""
    state = mesh.cp.state_dir
    only = ca(state, "retire")
    assert only.returncode == 1 and "MP0042" in only.stderr, only.stderr
    early = ca(state, "switch")
    assert early.returncode == 1 and "MP0040" in early.stderr, early.stderr
    empty = tmp_path / "empty-ca"
    empty.mkdir()
    bad = ca(state, "trust", "--ca-dir", str(empty))
    assert bad.returncode == 1 and "MP0039" in bad.stderr, bad.stderr
    assert str(empty / "ca-cert.pem") in bad.stderr.replace("\n", "")
    assert ca_step(state, "status")["phase"] == "Steady"

    pending = ca_step(state, "trust")["pending"]
    when.control_plane_killed().control_plane_started().converges()
    resumed = ca_step(state, "status")
    assert resumed["phase"] == "Trusted" and resumed["pending"] == pending
    assert ca_step(state, "switch", "--spread", "0s", "--wait")["phase"] == "Switched"
    assert ca_step(state, "retire")["roots"][0]["fingerprint"] == pending["root"]
