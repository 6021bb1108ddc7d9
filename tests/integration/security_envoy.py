"""Helpers for the security tests against a real Envoy: workload certificates from
meshpilot's own CA, inbound listeners and clusters assembled from the translation's
functions (``tls``, ``rbac``, ``jwt``) the way the config builder will, and static
bootstraps.

SDS over ADS in *bootstrap* clusters crashes Envoy at start (envoyproxy/envoy#15517: the
static cluster asks the ADS mux for its secret before the mux exists; clusters delivered
over CDS, as meshpilot sends them, are not affected). So a static bootstrap gets the
secrets as static resources and its clusters' secret references lose their
``sds_config`` (a name alone names a static secret); listeners may keep theirs.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from meshpilot.security import CertificateAuthority, WorkloadAuthorization, new_workload_key
from meshpilot.security.identity import SpiffeId, workload_identity
from meshpilot.xds.translate import listeners, names, pb, rbac, tls
from meshpilot.xds.translate.endpoints import socket
from meshpilot.xds.translate.policy import apply_policy

ADS_CLUSTER = "xds-grpc"


@dataclass(frozen=True)
class Workload:
    """An issued identity: PEM contents and the files they were written to."""

    identity: SpiffeId
    chain_pem: bytes
    key_pem: bytes
    chain_path: Path
    key_path: Path


def issue(ca: CertificateAuthority, namespace: str, account: str, directory: Path) -> Workload:
    identity = workload_identity(namespace, account, trust_domain=ca.trust_domain)
    key = new_workload_key(identity)
    issued = ca.issue(key.csr_pem, identity)
    directory.mkdir(parents=True, exist_ok=True)
    chain_path = directory / f"{account}.pem"
    key_path = directory / f"{account}.key"
    chain_path.write_bytes(issued.chain_pem)
    key_path.write_bytes(key.private_key_pem())
    key_path.chmod(0o600)
    return Workload(identity, issued.chain_pem, key.private_key_pem(), chain_path, key_path)


def certificate_secret(name: str, workload: Workload) -> dict[str, Any]:
    return {"name": name, "tls_certificate": {
        "certificate_chain": {"inline_bytes": _b64(workload.chain_pem)},
        "private_key": {"inline_bytes": _b64(workload.key_pem)},
    }}


def ca_secret(name: str, bundle_pem: bytes) -> dict[str, Any]:
    return {"name": name,
            "validation_context": {"trusted_ca": {"inline_bytes": _b64(bundle_pem)}}}


def workload_secrets(workload: Workload, bundle_pem: bytes) -> list[dict[str, Any]]:
    """Static stand-ins for what SDS serves a workload: ``default`` and ``ROOTCA``."""
    return [certificate_secret(tls.SDS_DEFAULT, workload), ca_secret(tls.SDS_ROOT, bundle_pem)]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def as_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def static_secret_refs(config: Any) -> Any:
    """The same config with every SDS reference pointing at a static secret (see the
    module docstring); the rest untouched."""
    if isinstance(config, dict):
        out = {k: static_secret_refs(v) for k, v in config.items()}
        if "name" in out and "ads" in out.get("sds_config", {}):
            out.pop("sds_config")
        return out
    if isinstance(config, list):
        return [static_secret_refs(v) for v in config]
    return config


def bootstrap(node_id: str, listeners_: Sequence[listener_pb2.Listener],
              clusters: Sequence[cluster_pb2.Cluster], secrets: Sequence[dict[str, Any]],
              *, ads_port: int | None = None) -> dict[str, Any]:
    """A static bootstrap; with ``ads_port``, an ADS stream configured too (so the
    listeners' SDS-over-ADS references are legal) towards a port nothing serves; without,
    the listeners' references name the static secrets as well (nothing else serves them)."""
    keep = ads_port is not None
    out: dict[str, Any] = {
        "node": {"id": node_id, "cluster": node_id},
        "static_resources": {
            "listeners": [as_dict(x) if keep else static_secret_refs(as_dict(x))
                          for x in listeners_],
            "clusters": [static_secret_refs(as_dict(c)) for c in clusters],
            "secrets": list(secrets),
        },
    }
    if ads_port is not None:
        ads = static_cluster(ADS_CLUSTER, "127.0.0.1", ads_port, http2=True)
        out["static_resources"]["clusters"].append(as_dict(ads))
        out["dynamic_resources"] = {"ads_config": {
            "api_type": "GRPC", "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": ADS_CLUSTER}}]}}
    return out


# --- clusters --------------------------------------------------------------------------------


def static_cluster(name: str, address: str, port: int, *, http2: bool = False,
                   has_sidecar: bool | None = None) -> cluster_pb2.Cluster:
    """A STATIC cluster of one endpoint with the translation's cluster defaults; with
    ``has_sidecar`` the endpoint carries the auto-mTLS metadata."""
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.STATIC)
    apply_policy(cluster, None, http2=http2)
    cluster.load_assignment.cluster_name = name
    endpoint = cluster.load_assignment.endpoints.add().lb_endpoints.add()
    endpoint.endpoint.address.CopyFrom(socket(address, port))
    if has_sidecar is not None:
        endpoint.metadata.CopyFrom(tls.endpoint_tls_metadata(has_sidecar))
    return cluster


def with_tls(cluster: cluster_pb2.Cluster, chosen: tls.UpstreamTls) -> cluster_pb2.Cluster:
    tls.apply_upstream_tls(cluster, chosen)
    return cluster


# --- inbound listeners -----------------------------------------------------------------------


def inbound_http_filters(cluster: str, authz: WorkloadAuthorization, trust_domain: str,
                         extra: Sequence[hcm.HttpFilter] = ()) -> Any:
    """``make_filters`` for an HTTP port: the translation's connection manager routing
    everything to ``cluster``, with ``extra`` (the JWT filter) and the RBAC filters
    before the router and the peer-principal header written (mTLS) or stripped."""
    route = route_pb2.RouteConfiguration(name="inbound", virtual_hosts=[rc.VirtualHost(
        name="inbound", domains=["*"], routes=[rc.Route(
            match=rc.RouteMatch(prefix="/"),
            route=rc.RouteAction(cluster=cluster, timeout=pb.duration("0s")))])])
    authorization = rbac.http_rbac_filters(authz, trust_domain)

    def make(mtls: bool) -> list[lc.Filter]:
        manager = listeners.connection_manager(
            "inbound_http", route_config=route, fault_and_cors=False)
        router = list(manager.http_filters)
        del manager.http_filters[:]
        manager.http_filters.extend([*extra, *authorization, *router])
        manager.early_header_mutation_extensions.append(tls.peer_principal_mutation(mtls))
        return [lc.Filter(name=names.HCM_FILTER, typed_config=pb.pack(manager))]

    return make


def inbound_tcp_filters(cluster: str, authz: WorkloadAuthorization, trust_domain: str) -> Any:
    """``make_filters`` for a TCP port: network RBAC, then tcp_proxy to ``cluster``."""
    authorization = rbac.network_rbac_filters(authz, trust_domain)
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix="inbound_tcp", cluster=cluster)

    def make(mtls: bool) -> list[lc.Filter]:
        del mtls  # the same filters on both chains
        return [*authorization,
                lc.Filter(name=names.TCP_PROXY_FILTER, typed_config=pb.pack(proxy))]

    return make


def inbound_listener(name: str, port: int, mode: tls.MtlsMode, make_filters: Any, *,
                     trust_domain: str = "cluster.local") -> listener_pb2.Listener:
    chains, listener_filters = tls.inbound_filter_chains(mode, make_filters,
                                                         trust_domain=trust_domain)
    return listener_pb2.Listener(
        name=name, address=socket("127.0.0.1", port), traffic_direction=base_pb2.INBOUND,
        filter_chains=chains, listener_filters=listener_filters,
        continue_on_listener_filters_timeout=True,
    )


def outbound_listener(name: str, port: int, routes: dict[str, str]) -> listener_pb2.Listener:
    """A plaintext HTTP listener routing by request host (``routes``: host → cluster)."""
    vhosts = [rc.VirtualHost(name=host, domains=[host], routes=[rc.Route(
        match=rc.RouteMatch(prefix="/"),
        route=rc.RouteAction(cluster=cluster, timeout=pb.duration("10s")))])
        for host, cluster in sorted(routes.items())]
    manager = listeners.connection_manager(
        name, route_config=route_pb2.RouteConfiguration(name=name, virtual_hosts=vhosts),
        fault_and_cors=False)
    return listener_pb2.Listener(
        name=name, address=socket("127.0.0.1", port), traffic_direction=base_pb2.OUTBOUND,
        filter_chains=[lc.FilterChain(filters=[
            lc.Filter(name=names.HCM_FILTER, typed_config=pb.pack(manager))])],
    )
