"""The node agent's sidecar bootstrap: xDS over mutual TLS with the host's own files,
the server verified by its address, the HTTP proxy on loopback, and refusals that say
what to do (an ``http://`` server, a group port without an app port)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.etcd_cluster import free_port

from meshpilot.hosts.agent import AgentOptions, HostAgent, JoinFailed
from meshpilot.mesh.model import node_from_metadata
from meshpilot.proxy.bootstrap import XDS_CLUSTER, XDS_TOKEN_HEADER

JOINED = {"nodeId": "sidecar~10.77.0.2~reviews-10.77.0.2.shop~shop.svc.cluster.local",
          "namespace": "shop", "entry": "reviews-10.77.0.2", "serviceAccount": "reviews",
          "labels": {"app": "reviews"}, "ports": {"http": 8080, "grpc-api": 9090},
          "xds": "10.77.0.1:15012", "xdsToken": "t" * 64}


def agent(tmp_path: Path, server: str = "https://10.77.0.1:8443",
          **ports: int) -> HostAgent:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(Path("/etc/ssl/certs/ca-certificates.crt").read_bytes())
    a = HostAgent(AgentOptions(server=server, token="x", group="shop/reviews",
                               address="10.77.0.2", ca_file=ca, state_dir=tmp_path,
                               app_ports=ports))
    a.joined = dict(JOINED)
    return a


def xds_cluster(doc: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in doc["static_resources"]["clusters"] if c["name"] == XDS_CLUSTER)


def test_xds_is_mutual_tls_from_the_host_files(tmp_path: Path) -> None:
    """The client certificate comes from a file-based SDS resource (Envoy watches its
    directory), which names the current generation's chain and key files."""
    a = agent(tmp_path, http=9080, **{"grpc-api": 9091})
    a.files.new_key(0)
    a.files.save(0, b"chain-0", b"roots")
    doc = a.bootstrap()
    tls = xds_cluster(doc)["transport_socket"]["typed_config"]["common_tls_context"]
    (sds,) = tls["tls_certificate_sds_secret_configs"]
    source = sds["sds_config"]["path_config_source"]
    assert source == {"path": str(a.files.sds),
                      "watched_directory": {"path": str(a.files.directory)}}
    (secret,) = json.loads(a.files.sds.read_text())["resources"]
    assert secret["name"] == sds["name"]
    assert secret["tls_certificate"] == {
        "certificate_chain": {"filename": str(a.files.chain_of(0))},
        "private_key": {"filename": str(a.files.key_of(0))}}
    assert tls["validation_context"]["trusted_ca"] == {"filename": str(a.files.roots)}
    assert tls["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "IP_ADDRESS", "matcher": {"exact": "10.77.0.1"}}]
    node = node_from_metadata(doc["node"]["id"], doc["node"]["metadata"])
    assert node.ip == "10.77.0.2" and node.outbound_ip == "127.0.0.1"
    assert {(p.name, p.container_port, p.app_port, p.protocol) for p in node.inbound} == {
        ("http", 8080, 9080, "HTTP"), ("grpc-api", 9090, 9091, "GRPC")}


def test_every_group_port_needs_an_app_port(tmp_path: Path) -> None:
    with pytest.raises(JoinFailed, match=r"port grpc-api .* has no --app-port"):
        agent(tmp_path, http=9080).bootstrap()


def test_plain_http_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JoinFailed, match="not https://"):
        agent(tmp_path, server="http://10.77.0.1:8080")


def test_keys_are_owner_only_and_generations_roll(tmp_path: Path) -> None:
    a = agent(tmp_path)
    csr = a.files.new_key(0)
    assert b"BEGIN CERTIFICATE REQUEST" in csr
    assert a.files.key_of(0).stat().st_mode & 0o777 == 0o600
    assert a.files.directory.stat().st_mode & 0o777 == 0o700
    for generation in (0, 1, 2):
        a.files.new_key(generation)
        a.files.save(generation, f"chain-{generation}".encode(), b"roots")
    assert a.files.sds.stat().st_mode & 0o777 == 0o600
    assert str(a.files.key_of(2)) in a.files.sds.read_text()
    assert not a.files.key_of(0).exists() and a.files.key_of(1).exists()


def test_a_ca_file_that_is_no_roots_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(JoinFailed, match=r"--ca-file .* not the control plane's roots"):
        HostAgent(AgentOptions(server="https://10.77.0.1:1", token="x", group="a/b",
                               address="10.77.0.2", ca_file=tmp_path / "ca.pem",
                               state_dir=tmp_path))


def test_xds_names_every_replica_the_joined_one_first(tmp_path: Path) -> None:
    """With replicas, the sidecar's xDS cluster lists each one's mutual-TLS port at its
    own priority (the joined replica at 0), checks them by connecting each second (also
    while idle), and accepts each one's address as the server's name: Envoy's priority
    failover moves the stream to the first live replica when its own dies."""
    a = agent(tmp_path, http=9080, **{"grpc-api": 9091})
    a.joined["replicas"] = [{"api": "https://10.77.0.9:8443", "xds": "10.77.0.9:15012"},
                            {"api": "https://10.77.0.1:8443", "xds": "10.77.0.1:15012"},
                            {"api": "https://10.77.0.1:9443", "xds": "10.77.0.1:16012"}]
    a.files.new_key(0)
    a.files.save(0, b"chain-0", b"roots")
    cluster = xds_cluster(a.bootstrap())
    endpoints = [(group["priority"], group["lb_endpoints"][0]["endpoint"]["address"]
                  ["socket_address"]) for group in cluster["load_assignment"]["endpoints"]]
    assert endpoints == [
        (0, {"address": "10.77.0.1", "port_value": 15012}),
        (1, {"address": "10.77.0.9", "port_value": 15012}),
        (2, {"address": "10.77.0.1", "port_value": 16012})]
    (check,) = cluster["health_checks"]
    assert check["interval"] == check["no_traffic_interval"] == "1s"
    tls = cluster["transport_socket"]["typed_config"]["common_tls_context"]
    assert [m["matcher"]["exact"] for m in
            tls["validation_context"]["match_typed_subject_alt_names"]] == [
        "10.77.0.1", "10.77.0.9"]


def test_one_control_plane_has_no_health_checks(tmp_path: Path) -> None:
    """A single control plane: one endpoint, nothing to fail over to, nothing checked."""
    a = agent(tmp_path, http=9080, **{"grpc-api": 9091})
    a.files.new_key(0)
    a.files.save(0, b"chain-0", b"roots")
    cluster = xds_cluster(a.bootstrap())
    assert len(cluster["load_assignment"]["endpoints"]) == 1
    assert "health_checks" not in cluster


def test_reports_try_each_replica_and_say_which_did_not_answer(tmp_path: Path) -> None:
    """The agent learns the replicas from an answer (the one it talks to stays first,
    unless another leads), and when none answers its error names every one it tried."""
    closed = [f"https://127.0.0.{n}:{free_port(f'127.0.0.{n}')}" for n in (1, 2)]
    a = agent(tmp_path, server=closed[0])
    a._learn({"replicas": [{"api": closed[1] + "/", "xds": "x:1"},
                           {"api": closed[0], "xds": "x:2"}]})
    assert a.servers == closed
    with pytest.raises(JoinFailed) as refused:
        a._post("report", {}, timeout=1.0)
    assert all(server in str(refused.value) for server in closed), refused.value
    # once an answer says which replica leads, reports go there first
    a._learn({"replicas": [{"api": closed[0], "xds": "x:2", "leading": False},
                           {"api": closed[1], "xds": "x:1", "leading": True}]})
    assert a.servers == [closed[1], closed[0]]


class RecordingSidecar:
    """The host's sidecar as the agent drives it: what was done to it, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.bootstrap: dict[str, Any] = {}

    def stop(self, grace: float = 5.0) -> None:
        self.calls.append("stop")

    def use_bootstrap(self, bootstrap: dict[str, Any]) -> None:
        self.calls.append("use_bootstrap")
        self.bootstrap = bootstrap

    def start(self) -> None:
        self.calls.append("start")


def test_a_reissued_xds_token_restarts_the_host_sidecar_with_it(tmp_path: Path) -> None:
    """A report's answer names the sidecar's xDS token as the control plane issues it
    now. The same token changes nothing; another one (the control plane was upgraded to
    another token binding) is taken, and the sidecar restarts with a bootstrap that
    presents it, instead of being refused until the host joins again."""
    a = agent(tmp_path, http=9080, **{"grpc-api": 9091})
    a.files.new_key(0)
    a.files.save(0, b"chain-0", b"roots")
    sidecar = RecordingSidecar()
    a.sidecar = sidecar  # type: ignore[assignment]
    assert not a.take_token({"accepted": True})  # an older control plane names none
    assert not a.take_token({"accepted": True, "xdsToken": JOINED["xdsToken"]})
    assert sidecar.calls == []
    assert a.take_token({"accepted": True, "xdsToken": "n" * 64})
    assert sidecar.calls == ["stop", "use_bootstrap", "start"]
    assert a.joined["xdsToken"] == "n" * 64
    (grpc,) = sidecar.bootstrap["dynamic_resources"]["ads_config"]["grpc_services"]
    assert {"key": XDS_TOKEN_HEADER, "value": "n" * 64} in grpc["initial_metadata"]
