"""``grpc_response_status`` at the destination: a gRPC port's request counters carry the
response's gRPC status, which becomes the label; other ports keep it empty."""

from __future__ import annotations

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf import json_format
from tests.builders import sidecar_node
from xds.type.v3 import typed_struct_pb2

from meshpilot.mesh.model import InboundPort, MeshService, MeshSnapshot, ServicePort
from meshpilot.security import WorkloadAuthorization
from meshpilot.telemetry.envoy_stats import InboundStat, parse_json, split_inbound_stat
from meshpilot.telemetry.istio import ProxyIdentity, relabel
from meshpilot.xds.translate import listeners, telemetry
from meshpilot.xds.translate.workload_security import InboundSecurity

CLIENT = "client-v1|default|client|v1|client|mtls"
NODE = sidecar_node("echo-v1-0123456789-bcdfg", "127.10.0.2", workload="echo-v1",
                    labels={"app": "echo"},
                    inbound=(InboundPort(9000, 40000, "grpc", "GRPC"),
                             InboundPort(8080, 40001, "http", "HTTP")))


def _tags(port: InboundPort) -> list[dict[str, str]]:
    security = InboundSecurity("cluster.local", (), WorkloadAuthorization())
    listener = listeners.inbound(NODE, port, security)
    manager = hcm.HttpConnectionManager()
    assert listener.filter_chains[0].filters[-1].typed_config.Unpack(manager)
    (log,) = manager.access_log
    typed = typed_struct_pb2.TypedStruct()
    assert log.typed_config.Unpack(typed)
    (counter,) = json_format.MessageToDict(typed.value)["counters"]
    return counter["stat"]["tags"]


def test_a_grpc_port_counts_requests_by_grpc_status_between_code_and_source():
    grpc_port, http_port = NODE.inbound
    assert [t["name"] for t in _tags(grpc_port)] == ["response_code", "response_flags",
                                                     "grpc_status", "source"]
    assert _tags(grpc_port)[2]["value_format"] == "%GRPC_STATUS_NUMBER%"
    assert _tags(http_port) == [{"name": "response_code", "value_format": "%RESPONSE_CODE%"},
                                {"name": "response_flags", "value_format": "%RESPONSE_FLAGS%"},
                                {"name": "source", "value_format": "%ROUTE_NAME%"}]
    assert telemetry.inbound_access_log(8080) == telemetry.inbound_access_log(8080, grpc=False)


def test_the_grpc_status_is_read_back_and_labelled():
    ok = "meshpilot.inbound_9000.requests.response_code.200.response_flags.-"
    name = f"{ok}.grpc_status.5.source.{CLIENT}"
    assert split_inbound_stat(name) == InboundStat("requests", "200", "-", "5", 9000, CLIENT)
    odd = f"{ok}.grpc_status.-.source.{CLIENT}"
    assert split_inbound_stat(odd) == InboundStat("requests", "200", "-", "", 9000, CLIENT)
    plain = f"meshpilot.inbound_8080.requests.response_code.200.response_flags.-.source.{CLIENT}"
    raw = parse_json({"stats": [{"name": name, "value": 2}, {"name": plain, "value": 3}]})
    points = list(relabel(ProxyIdentity.from_node(NODE), NODE, raw,
                          MeshSnapshot(version=1, services={}, endpoints={})))
    got = {dict(p.labels)["request_protocol"]: dict(p.labels) | {"value": p.value}
           for p in points}
    assert got["grpc"]["grpc_response_status"] == "5"
    assert got["grpc"]["value"] == 2
    assert got["http"]["grpc_response_status"] == ""


def test_the_source_side_keeps_the_grpc_status_of_grpc_services_only():
    """The outbound logger tags every request with its gRPC status (derived from the
    HTTP status for plain HTTP); the label is filled for a Service port whose protocol
    is gRPC, and empty for the others, as Istio's ``grpc_response_status``."""
    grpc_host, http_host = "echo.default.svc.cluster.local", "web.default.svc.cluster.local"
    snapshot = MeshSnapshot(version=1, services={
        grpc_host: MeshService(grpc_host, "echo", "default", (ServicePort(9000, "grpc",
                                                                          "GRPC"),)),
        http_host: MeshService(http_host, "web", "default", (ServicePort(80, "http"),))},
        endpoints={})
    out = "meshpilot.outbound.requests.response_code.200.response_flags.-.grpc_status"
    raw = parse_json({"stats": [
        {"name": f"{out}.7.cluster.outbound|9000||{grpc_host}", "value": 2},
        {"name": f"{out}.0.cluster.outbound|80||{http_host}", "value": 3},
        {"name": f"{out}.0.cluster.PassthroughCluster", "value": 1}]})
    points = list(relabel(ProxyIdentity.from_node(NODE), NODE, raw, snapshot))
    got = {dict(p.labels)["destination_service_name"]: dict(p.labels) for p in points}
    assert got["echo"]["grpc_response_status"] == "7"
    assert got["echo"]["request_protocol"] == "grpc"
    assert got["web"]["grpc_response_status"] == ""
    # a cluster that is no mesh service's names itself, as Istio reports passthrough
    assert got["PassthroughCluster"]["destination_service"] == "PassthroughCluster"
    assert got["PassthroughCluster"]["destination_workload"] == "unknown"
