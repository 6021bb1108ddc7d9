"""The xDS server serves a stream only for the node whose credential it presents.

Given a server checking proxy tokens, when a client opens an ADS stream naming a node,
then without a token, or with the token of another node, the stream is refused
(UNAUTHENTICATED) and nothing of the config is sent; with its own token it is served.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from dataclasses import replace

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import duration_pb2, struct_pb2
from tests.proxy_tokens import TOKENS, authenticator

from meshpilot.mesh.model import ProxyNode, node_to_metadata
from meshpilot.proxy.bootstrap import XDS_TOKEN_HEADER
from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.xds import CLUSTER, XdsServer, XdsSnapshot

METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
NODE = ProxyNode(id="sidecar~127.0.0.1~web-1.default~default.svc.cluster.local",
                 kind="sidecar", namespace="default", ip="127.0.0.1", workload="web")


@pytest.fixture
def server() -> Iterator[XdsServer]:
    xds = XdsServer(authenticate=authenticator())
    xds.start()
    xds.publish(XdsSnapshot(1, lambda node: {CLUSTER: {}}))
    try:
        yield xds
    finally:
        xds.stop(0.2)


def first_answer(port: int, node: ProxyNode, token: str | None
                 ) -> discovery_pb2.DeltaDiscoveryResponse:
    """Open a Delta ADS stream as ``node`` and read the answer to its CDS request."""
    meta = struct_pb2.Struct()
    meta.update(node_to_metadata(node))
    request = discovery_pb2.DeltaDiscoveryRequest(
        node={"id": node.id, "metadata": meta}, type_url=CLUSTER)
    metadata = [(XDS_TOKEN_HEADER, token)] if token is not None else []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(
            METHOD, request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString)
        responses = call(iter([request]), metadata=metadata, timeout=5)
        return next(iter(responses))


def test_a_proxy_with_its_own_token_is_served(server: XdsServer) -> None:
    answer = first_answer(server.port, NODE, TOKENS.for_proxy(NODE))
    assert answer.type_url == CLUSTER and answer.nonce


@pytest.mark.parametrize("token", [None, "", "0" * 64,
                                   TOKENS.for_proxy(replace(NODE, id="sidecar~other"))])
def test_a_stream_without_the_nodes_token_is_refused(server: XdsServer, token: str | None
                                                      ) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        first_answer(server.port, NODE, token)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not any(s.node.id == NODE.id for s in server.status())  # never a stream


def test_a_token_from_another_key_is_refused(server: XdsServer) -> None:
    stranger = ProxyTokens(b"some other control plane's key")
    with pytest.raises(grpc.RpcError) as refused:
        first_answer(server.port, NODE, stranger.for_proxy(NODE))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_an_impostor_never_silences_the_real_proxys_stream(server: XdsServer) -> None:
    """Issue 18: a client claiming a connected proxy's node id used to take over its
    stream, freezing the real proxy's config. Without the node's token the impostor is
    refused, and the real stream stays the one served: it receives the next version."""
    meta = struct_pb2.Struct()
    meta.update(node_to_metadata(NODE))
    requests: list[discovery_pb2.DeltaDiscoveryRequest] = [
        discovery_pb2.DeltaDiscoveryRequest(node={"id": NODE.id, "metadata": meta},
                                            type_url=CLUSTER)]

    def stream() -> Iterator[discovery_pb2.DeltaDiscoveryRequest]:
        yield requests[0]
        while True:  # ACK whatever comes, until the channel closes
            ack = acks.get()
            if ack is None:
                return
            yield ack

    acks: queue.Queue[discovery_pb2.DeltaDiscoveryRequest | None] = queue.Queue()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.stream_stream(
            METHOD, request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString)
        answers = iter(call(stream(), metadata=[(XDS_TOKEN_HEADER, TOKENS.for_proxy(NODE))],
                            timeout=10))
        first = next(answers)
        acks.put(discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER,
                                                     response_nonce=first.nonce))
        with pytest.raises(grpc.RpcError) as refused:
            first_answer(server.port, NODE, None)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        added = cluster_pb2.Cluster(name="added", type=cluster_pb2.Cluster.STATIC,
                                    connect_timeout=duration_pb2.Duration(seconds=1))
        server.publish(XdsSnapshot(2, lambda node: {CLUSTER: {"added": added}}))
        second = next(answers)
        assert [r.name for r in second.resources] == ["added"]
        assert [s.node.id for s in server.status()] == [NODE.id]
        acks.put(None)
