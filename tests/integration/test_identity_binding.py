"""A proxy speaks only for the workload its credential was issued for.

Given an xDS server and failure report service checking proxy tokens as the control plane
does (``ProxyTokens.verify_proxy``), and a config that follows the node's identity (its
cluster, and the certificate of its service account), when a process holding node A's
genuine credential opens a stream naming node A but declaring node B's metadata (B's
workload, labels, service account; or the ingress gateway's), then:

- xDS: the stream is refused (UNAUTHENTICATED) before anything is sent: no config, no
  secret, no stream in the server's status, and the refusal is counted;
- reports: the stream is refused, its reports dropped and counted as rejected, and
  nothing is counted for B (nor for A);

while A declaring its own metadata is served on the same port. The binding follows
Istio's xDS authorization (pilot's ``checkConnectionIdentity``: a node whose metadata
names another namespace or service account than its proven identity is refused), here
extended to the workload, pod, labels and kind the config and the reports depend on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import httpx
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import duration_pb2, json_format, struct_pb2
from tests.builders import sidecar_node, static_cluster, static_envoy_config
from tests.integration.test_failure_reports import forged, send

from meshpilot.mesh.model import ProxyNode, node_to_metadata
from meshpilot.proxy.bootstrap import XDS_CLUSTER, XDS_TOKEN_HEADER, bootstrap, report_token
from meshpilot.proxy.envoy import EnvoyProcess
from meshpilot.proxy.ports import free_port, wait_port
from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.telemetry.failure_reports import FailureReports, report_verifier
from meshpilot.xds import CLUSTER, XdsServer, XdsSnapshot
from meshpilot.xds.auth import token_authenticator
from meshpilot.xds.translate.failure_reports import failure_reporter
from meshpilot.xds.types import SECRET

pytestmark = pytest.mark.timeout(60)

TOKENS = ProxyTokens(b"identity binding tests' key")
A = replace(sidecar_node("web-7d9f-abcde", "127.0.0.1", labels={"app": "web"},
                         namespace="shop", workload="web"), service_account="web-sa")
B = replace(sidecar_node("payments-5c6b-fghij", "127.0.0.1",
                         labels={"app": "payments", "version": "v1"}, namespace="shop",
                         workload="payments"), service_account="payments-sa")
CLAIMS = {
    "B's metadata": replace(B, id=A.id),
    "B's labels": replace(A, labels=dict(B.labels)),
    "B's service account": replace(A, service_account=B.service_account),
    "the gateway's": replace(A, kind="gateway", namespace="istio-system",
                             workload="istio-ingressgateway", name="istio-ingressgateway",
                             labels={"istio": "ingressgateway"}),
}
METHODS = {"delta": ("DeltaAggregatedResources", discovery_pb2.DeltaDiscoveryRequest,
                     discovery_pb2.DeltaDiscoveryResponse),
           "sotw": ("StreamAggregatedResources", discovery_pb2.DiscoveryRequest,
                    discovery_pb2.DiscoveryResponse)}


def config_for(node: ProxyNode) -> dict[str, dict[str, object]]:
    """A config chosen by the identity the node declares, as the control plane's is:
    its workload's cluster and its service account's certificate (the secret a forged
    stream must never see)."""
    cluster = cluster_pb2.Cluster(name=f"outbound|80||{node.workload}.{node.namespace}",
                                  type=cluster_pb2.Cluster.STATIC,
                                  connect_timeout=duration_pb2.Duration(seconds=1))
    secret = secret_pb2.Secret(name="default")
    secret.generic_secret.secret.inline_string = f"key of {node.service_account}"
    return {CLUSTER: {cluster.name: cluster}, SECRET: {"default": secret}}


@pytest.fixture
def server() -> Iterator[tuple[XdsServer, FailureReports]]:
    reports = FailureReports(report_verifier(TOKENS.for_proxy))
    xds = XdsServer(authenticate=token_authenticator(TOKENS.verify_proxy),
                    services=(reports.handler(),))
    xds.start()
    xds.publish(XdsSnapshot(1, config_for))
    try:
        yield xds, reports
    finally:
        xds.stop(0.2)


def first_answer(port: int, api: str, node: ProxyNode, token: str, type_url: str
                 ) -> object:
    """Open an ADS stream as ``node`` presenting ``token``, ask for ``type_url`` (every
    cluster, or the workload secret), and read the first answer."""
    method, request_type, response_type = METHODS[api]
    meta = struct_pb2.Struct()
    meta.update(node_to_metadata(node))
    names = ["default"] if type_url == SECRET else []  # SDS names what it wants
    field = "resource_names_subscribe" if api == "delta" else "resource_names"
    request = request_type(node={"id": node.id, "metadata": meta}, type_url=type_url,
                           **{field: names})
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(
            f"/envoy.service.discovery.v3.AggregatedDiscoveryService/{method}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString)
        return next(iter(call(iter([request]), metadata=[(XDS_TOKEN_HEADER, token)],
                              timeout=5)))


@pytest.mark.parametrize("api", sorted(METHODS))
def test_node_a_declaring_its_own_identity_is_served_its_config_and_secret(
        server: tuple[XdsServer, FailureReports], api: str) -> None:
    xds, _ = server
    answer = first_answer(xds.port, api, A, TOKENS.for_proxy(A), SECRET)
    secrets = [secret_pb2.Secret.FromString(r.resource.value if api == "delta" else r.value)
               for r in answer.resources]  # type: ignore[attr-defined]
    assert [s.generic_secret.secret.inline_string for s in secrets] == ["key of web-sa"]
    assert xds.refused_streams == 0


@pytest.mark.parametrize("claim", sorted(CLAIMS))
@pytest.mark.parametrize("api", sorted(METHODS))
def test_node_as_token_with_another_workloads_metadata_gets_no_config_and_no_secret(
        server: tuple[XdsServer, FailureReports], api: str, claim: str) -> None:
    xds, _ = server
    for type_url in (SECRET, CLUSTER):
        with pytest.raises(grpc.RpcError) as refused:
            first_answer(xds.port, api, CLAIMS[claim], TOKENS.for_proxy(A), type_url)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "as it declares itself" in (refused.value.details() or "")
    assert xds.status() == []  # never a stream, so never a config or a key
    assert xds.refused_streams == 2


def test_a_real_envoy_with_node_as_token_and_bs_metadata_is_never_configured(
        server: tuple[XdsServer, FailureReports], tmp_path: Path) -> None:
    """Two real Envoys on one server: A's genuine bootstrap is served and ACKs; a
    bootstrap with A's id and token but B's metadata keeps being refused (Envoy retries)
    and its Envoy holds no dynamic cluster and no secret."""
    xds, _ = server
    genuine = EnvoyProcess(bootstrap(A, xds_host="127.0.0.1", xds_port=xds.port,
                                     xds_token=TOKENS.for_proxy(A)),
                           name="genuine", work_dir=tmp_path)
    impostor = EnvoyProcess(bootstrap(CLAIMS["B's metadata"], xds_host="127.0.0.1",
                                      xds_port=xds.port, xds_token=TOKENS.for_proxy(A)),
                            name="impostor", work_dir=tmp_path)
    with genuine, impostor:
        assert xds.wait_acked(1, [A.id], timeout=20), xds.status()
        deadline = time.monotonic() + 15
        while xds.refused_streams < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert xds.refused_streams >= 2, impostor.log_tail()  # refused, and again
        dump = impostor.admin.config_dump()
        dynamic = [c for section in dump["configs"]
                   for key, value in section.items()
                   if key.startswith("dynamic") for c in value]
        assert dynamic == [], dynamic
        assert [s.node.id for s in xds.status()] == [A.id]
        served = xds.status()[0].node
        assert (served.workload, served.service_account) == ("web", "web-sa")


def test_reports_with_node_as_credential_and_bs_metadata_are_not_counted(
        server: tuple[XdsServer, FailureReports]) -> None:
    """A gRPC client sends A's genuine report credential with B's metadata: refused,
    dropped and counted; B (and A) have nothing reported. A's own metadata with the same
    credential is admitted on the same port."""
    xds, reports = server
    heard: list[tuple[str, str, int]] = []
    reports.subscribe(lambda ns, workload, n: heard.append((ns, workload, n)))
    credential = report_token(TOKENS.for_proxy(A))
    for claim in sorted(CLAIMS):
        with pytest.raises(grpc.RpcError) as refused:
            send(xds.port, forged(CLAIMS[claim], credential, [500, 503]))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    counts = reports.counts()
    assert (counts.accepted, counts.answers) == (0, 0), counts
    assert (counts.rejected, counts.rejected_streams) == (2 * len(CLAIMS), len(CLAIMS))
    assert reports.reported("shop", "payments") is None and heard == []
    send(xds.port, forged(A, credential, [500]))
    assert reports.reported("shop", "web") == (1, 1) and heard == [("shop", "web", 1)]
    assert reports.reported("shop", "payments") is None


def test_a_real_envoys_reports_with_bs_metadata_are_refused(
        server: tuple[XdsServer, FailureReports], tmp_path: Path) -> None:
    """A real Envoy whose bootstrap node is A's id and report credential with B's
    metadata, carrying the canary sidecars' failure logger: its failed answers never
    count for B; its report stream is refused and counted."""
    xds, reports = server
    listen = free_port()
    config = static_envoy_config(listen, upstream_port=free_port())
    config["node"] = bootstrap(CLAIMS["B's metadata"], xds_host="127.0.0.1",
                               xds_port=xds.port, xds_token=TOKENS.for_proxy(A))["node"]
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]
    manager["access_log"] = [json_format.MessageToDict(failure_reporter())]
    channel = static_cluster(XDS_CLUSTER, xds.port)
    channel["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                     "HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}}
    config["static_resources"]["clusters"].append(channel)
    with EnvoyProcess(config, name="impostor", work_dir=tmp_path):
        wait_port("127.0.0.1", listen, timeout=10)
        with httpx.Client(base_url=f"http://127.0.0.1:{listen}", trust_env=False,
                          timeout=5) as client:
            deadline = time.monotonic() + 15
            while reports.counts().rejected_streams < 1 and time.monotonic() < deadline:
                assert client.get("/").status_code == 503  # nobody upstream
                time.sleep(0.1)
    counts = reports.counts()
    assert counts.rejected_streams >= 1 and counts.rejected >= 1, counts
    assert (counts.accepted, counts.answers) == (0, 0), counts
    assert reports.reported("shop", "payments") is None
    assert reports.reported("shop", "web") is None
