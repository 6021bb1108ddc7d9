"""A canary's sidecars report each answer to the control plane as it happens.

Fail-fast (:mod:`meshpilot.delivery.fail_fast`) judges a canary on how many requests it
served and how many of them failed. Read from the sidecars' admin counters, that cost a
live read (5-11 ms, more under load) between the deciding failure and the rollback, at
about five failing requests a second. So the sidecars of a Canary's target workload
stream every answer, successes and failures, to the control plane through Envoy's gRPC
access log service (``envoy.access_loggers.http_grpc``): unbatched (``buffer_size_bytes``
0: an entry is sent as it is logged), over the bootstrap's xDS cluster, so it reaches the
control plane wherever xDS does. The control plane counts them per workload, steps the
rollout on arrival of a failure and judges on those counts
(``telemetry.failure_reports.ReportedCounts``).

Only a Canary's target workload carries the logger: Flagger scales the target to zero
outside a rollout, so those are the canary pods of a rollout in progress, and they take
a small share of the traffic (cheap to log one entry per answer). The stream is
authenticated by the credential the proxy's bootstrap puts in its node
(``proxy.bootstrap.report_token``), which Envoy sends at the start of the stream: a local
process without it cannot report (``telemetry.failure_reports``).
"""

from __future__ import annotations

from dataclasses import replace

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf import wrappers_pb2

from meshpilot.mesh.model import MeshSnapshot, ProxyNode
from meshpilot.xds.translate import pb

LOGGER = "envoy.access_loggers.http_grpc"
LOG_NAME = "meshpilot-failures"
"""The ``log_name`` the control plane's access log service knows these reports by."""
XDS_CLUSTER = "xds-grpc"
"""The bootstrap's static cluster to the control plane (``proxy.bootstrap.XDS_CLUSTER``;
translation may not import the proxy package, a test keeps the two equal)."""


def canary_targets(snapshot: MeshSnapshot) -> frozenset[tuple[str, str]]:
    """(namespace, workload) of the target Deployment of every Canary fail-fast judges
    (not of one annotated ``meshpilot.io/fail-fast: "false"``)."""
    return frozenset((c.namespace, c.obj.spec.target_ref.name) for c in snapshot.canaries
                     if c.obj.fail_fast)


def marked(node: ProxyNode, targets: frozenset[tuple[str, str]]) -> ProxyNode:
    """``node`` set to report its failures when it is a sidecar of one of ``targets``
    (and not when it is not); the very same node when that changes nothing."""
    wanted = node.kind == "sidecar" and (node.namespace, node.workload) in targets
    return node if wanted == node.report_failures else replace(node, report_failures=wanted)


def failure_reporter() -> accesslog_pb2.AccessLog:
    """The gRPC access logger that streams every answer, unbatched: the control plane
    needs the successes too, to judge a share of failures without reading counters."""
    config = als_pb2.HttpGrpcAccessLogConfig(common_config=als_pb2.CommonGrpcAccessLogConfig(
        log_name=LOG_NAME,
        grpc_service=grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=XDS_CLUSTER)),
        transport_api_version=config_source_pb2.V3,
        buffer_size_bytes=wrappers_pb2.UInt32Value(value=0),
    ))
    return accesslog_pb2.AccessLog(name=LOGGER, typed_config=pb.pack(config))


def with_failure_reports(listener: listener_pb2.Listener) -> listener_pb2.Listener:
    """``listener`` with :func:`failure_reporter` after the access logs of every HTTP
    connection manager in its filter chains (in place; returned for chaining)."""
    logger = failure_reporter()
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            manager = hcm.HttpConnectionManager()
            if network_filter.typed_config.Is(manager.DESCRIPTOR):
                network_filter.typed_config.Unpack(manager)
                manager.access_log.append(logger)
                network_filter.typed_config.CopyFrom(pb.pack(manager))
    return listener
