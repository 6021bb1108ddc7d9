"""The sidecars of a Canary's target workload stream every answer (successes and failures)
to the control plane (Envoy's gRPC access log service), so fail-fast judges on arrival
without reading counters; no other proxy does, and the primary's pods never do."""

from __future__ import annotations

from dataclasses import replace

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from tests.builders import canary, sidecar_node
from tests.unit.test_xds_shared import same_as_reference

from meshpilot.api.flagger import Canary
from meshpilot.mesh.model import InboundPort, MeshSnapshot, Named, ProxyNode
from meshpilot.proxy.bootstrap import REPORT_TOKEN_KEY, XDS_CLUSTER, bootstrap, report_token
from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.telemetry.failure_reports import report_verifier
from meshpilot.xds import ProxyConfigBuilder
from meshpilot.xds.translate import TYPE_LISTENER, build_resources
from meshpilot.xds.translate import failure_reports as fr

PORTS = (InboundPort(8080, 18080, "http"),)


def snapshot(*targets: str, fail_fast: str = "true") -> MeshSnapshot:
    canaries = tuple(Named("default", t, Canary.model_validate(
        canary(t, analysis={"interval": "1s"}, port=8080,
               annotations={"meshpilot.io/fail-fast": fail_fast}))) for t in targets)
    return MeshSnapshot(1, {}, {}, canaries=canaries)


def pod(workload: str, namespace: str = "default") -> ProxyNode:
    return sidecar_node(f"{workload}-7d9f-abcde", "127.0.0.9", labels={"app": "myapp"},
                        namespace=namespace, inbound=PORTS, workload=workload)


def grpc_loggers(listener: listener_pb2.Listener) -> list[als_pb2.HttpGrpcAccessLogConfig]:
    out = []
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            manager = hcm.HttpConnectionManager()
            if network_filter.typed_config.Is(manager.DESCRIPTOR):
                network_filter.typed_config.Unpack(manager)
                for log in manager.access_log:
                    if log.name == fr.LOGGER:
                        config = als_pb2.HttpGrpcAccessLogConfig()
                        log.typed_config.Unpack(config)
                        # every answer: the control plane counts successes as well
                        assert not log.HasField("filter")
                        out.append(config)
    return out


def listeners_of(snap: MeshSnapshot, node: ProxyNode) -> dict[str, listener_pb2.Listener]:
    return build_resources(snap, node)[TYPE_LISTENER]  # type: ignore[return-value]


def test_a_canary_pod_streams_every_answer_on_its_inbound_listener_only() -> None:
    listeners = listeners_of(snapshot("myapp"), pod("myapp"))
    configs = grpc_loggers(listeners["inbound_8080"])
    chains = len(listeners["inbound_8080"].filter_chains)
    assert len(configs) == chains and all(c == configs[0] for c in configs)  # mTLS, plaintext
    common = configs[0].common_config
    assert common.grpc_service.envoy_grpc.cluster_name == XDS_CLUSTER
    assert common.log_name == fr.LOG_NAME
    assert common.HasField("buffer_size_bytes") and common.buffer_size_bytes.value == 0
    assert not [c for n, lis in listeners.items() if n != "inbound_8080"
                for c in grpc_loggers(lis)]


def test_the_primary_and_other_workloads_do_not() -> None:
    snap = snapshot("myapp")
    for node in (pod("myapp-primary"), pod("other"), pod("myapp", namespace="test")):
        assert not [c for lis in listeners_of(snap, node).values() for c in grpc_loggers(lis)]


def test_nor_a_canary_with_fail_fast_turned_off() -> None:
    snap = snapshot("myapp", fail_fast="false")
    assert not [c for lis in listeners_of(snap, pod("myapp")).values()
                for c in grpc_loggers(lis)]


def test_the_shared_builder_follows_the_canary_coming_and_going() -> None:
    """The per-node build marks the node from the snapshot as the reference build does,
    and rebuilds its listeners when the Canary is created or deleted."""
    builder = ProxyConfigBuilder()
    node = pod("myapp")
    before, during, after = snapshot(), snapshot("myapp"), MeshSnapshot(3, {}, {})
    for snap in (before, during, after):
        same_as_reference(builder, snap, node)
    first = builder.config_for(before, node)[TYPE_LISTENER]["inbound_8080"]
    assert not grpc_loggers(first.message)
    during_listener = builder.config_for(during, node)[TYPE_LISTENER]["inbound_8080"]
    assert grpc_loggers(during_listener.message)
    assert not grpc_loggers(builder.config_for(after, node)[TYPE_LISTENER]["inbound_8080"]
                            .message)


def test_marking_keeps_an_unchanged_node_the_same_object() -> None:
    node = pod("myapp")
    assert fr.marked(node, frozenset()) is node
    marked = fr.marked(node, frozenset({("default", "myapp")}))
    assert marked.report_failures and fr.marked(marked, frozenset({("default", "myapp")})) \
        is marked


def test_the_bootstrap_carries_the_report_credential_only_with_an_xds_token() -> None:
    """The node a proxy sends on its failure-report stream carries a credential derived
    from its xDS token (not the token: the node is echoed by Envoy's admin); the verifier
    takes it for that node as issued only (its id and its workload identity), and
    nothing else."""
    tokens = ProxyTokens(b"k" * 32)
    node = sidecar_node("myapp-1", "127.0.0.1", labels={"app": "myapp"}, workload="myapp")
    xds_token = tokens.for_proxy(node)
    doc = bootstrap(node, xds_host="127.0.0.1", xds_port=1, xds_token=xds_token)
    credential = doc["node"]["metadata"][REPORT_TOKEN_KEY]
    assert credential == report_token(xds_token) and credential != xds_token
    assert REPORT_TOKEN_KEY not in bootstrap(node, xds_host="127.0.0.1",
                                             xds_port=1)["node"]["metadata"]
    verify = report_verifier(tokens.for_proxy)
    assert verify(node, credential)
    assert not verify(replace(
        node, id="sidecar~127.0.0.2~other-1.default~default.svc.cluster.local"), credential)
    assert not verify(replace(node, workload="myapp-primary"), credential)
    assert not verify(replace(node, labels={"app": "myapp-primary"}), credential)
    assert not verify(node, None) and not verify(node, "") and not verify(node, xds_token)
