"""A pod's sidecar credential speaks for that pod's workload only, in a running mesh.

Given myapp v1 and v2 running with their sidecars (each served: their tokens, issued by
the runtime, are bound to the identity their bootstraps declare), when a local process
takes v1's sidecar credential from its bootstrap and opens an xDS stream and a failure
report stream naming v1's node but declaring v2's workload and labels, then both are
refused (UNAUTHENTICATED), nothing is counted for v2, the refusals show on the control
plane's /metrics, and v1's own sidecar stays connected and served. Follows Istio's xDS
authorization (pilot's ``checkConnectionIdentity``), which refuses a node whose metadata
contradicts the identity its credential proves.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import grpc
import httpx
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

from meshpilot.mesh.model import node_from_metadata, node_to_metadata
from meshpilot.proxy.bootstrap import REPORT_TOKEN_KEY, XDS_TOKEN_HEADER
from meshpilot.xds import CLUSTER
from tests.e2e import myapp
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given
from tests.integration.test_failure_reports import forged, send

PROXIES = {"mesh-proxy", "istio-ingressgateway"}  # beside the pods' sidecars
ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


def own_counts(metrics_url: str) -> dict[str, float]:
    text = httpx.get(metrics_url, trust_env=False, timeout=10).text
    return {m[1]: float(m[2]) for m in re.finditer(
        r"^(meshpilot_\w+_rejected_total) (\S+)$", text, re.MULTILINE)}


def test_a_sidecars_credential_with_another_workloads_metadata_is_refused(
        mesh: Mesh, given: Given) -> None:
    given.applied(myapp.version("v1"), myapp.version("v2"), myapp.service(),
                  myapp.subsets(), *myapp.ingress("v1"))
    pods = {p["metadata"]["labels"]["version"]: p["metadata"]["name"] for p in mesh.pods()}
    everyone = set(pods.values()) | PROXIES
    mesh.wait_synced(everyone)  # every proxy served: the tokens bind what each declares
    sidecars = mesh.cp.state_dir / "run" / "sidecars"
    boot = {v: json.loads((sidecars / f"{name}.json").read_text()) for v, name in pods.items()}
    v1 = node_from_metadata(boot["v1"]["node"]["id"], boot["v1"]["node"]["metadata"])
    v2 = node_from_metadata(boot["v2"]["node"]["id"], boot["v2"]["node"]["metadata"])
    (header,) = boot["v1"]["dynamic_resources"]["ads_config"]["grpc_services"][0][
        "initial_metadata"]
    assert header["key"] == XDS_TOKEN_HEADER
    claim = replace(v2, id=v1.id)  # v1's node, v2's workload, labels and pod
    before = own_counts(mesh.endpoints["metrics"])

    meta = struct_pb2.Struct()
    meta.update(node_to_metadata(claim))
    request = discovery_pb2.DeltaDiscoveryRequest(node={"id": claim.id, "metadata": meta},
                                                  type_url=CLUSTER)
    with grpc.insecure_channel(mesh.endpoints["xds"]) as channel:
        call = channel.stream_stream(
            ADS, request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString)
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(call(iter([request]), metadata=[(XDS_TOKEN_HEADER, header["value"])],
                           timeout=10)))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    port = int(mesh.endpoints["xds"].rpartition(":")[2])
    credential = boot["v1"]["node"]["metadata"][REPORT_TOKEN_KEY]
    with pytest.raises(grpc.RpcError) as refused:
        send(port, forged(claim, credential, [500, 500, 500]))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    after = own_counts(mesh.endpoints["metrics"])
    assert after["meshpilot_xds_streams_rejected_total"] == \
        before["meshpilot_xds_streams_rejected_total"] + 1, (before, after)
    assert after["meshpilot_failure_report_streams_rejected_total"] == \
        before["meshpilot_failure_report_streams_rejected_total"] + 1, (before, after)
    assert after["meshpilot_failure_reports_rejected_total"] == \
        before["meshpilot_failure_reports_rejected_total"] + 3, (before, after)
    # v1's own sidecar kept its stream, served as v1; the impostor never had one
    proxies = {p["name"]: p for p in mesh.wait_synced(everyone)}
    assert proxies[pods["v1"]]["id"] == v1.id and proxies[pods["v1"]]["workload"] == "myapp-v1"
