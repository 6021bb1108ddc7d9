"""Helpers for the gateway TLS tests against a real Envoy: certificates with DNS names
(made with ``cryptography``), Secrets holding them, and a static bootstrap made from the
gateway's own translated resources.

The bootstrap is static, so each listener's route config (RDS) is put inline and the
gateway's SDS secrets become static secrets, named by the listeners without their
``sds_config`` (``security_envoy.static_secret_refs``): Envoy then checks that every name
a chain gives is served.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from tests.integration.security_envoy import as_dict, bootstrap, ca_secret
from tests.tls_pairs import b64

from meshpilot.api.credentials import Secret
from meshpilot.api.networking import Gateway, VirtualService
from meshpilot.mesh.model import Endpoint, MeshService, MeshSnapshot, Named, ProxyNode
from meshpilot.proxy.envoy import validate_bootstrap
from meshpilot.xds.translate import (
    TYPE_CLUSTER,
    TYPE_ENDPOINT,
    TYPE_LISTENER,
    TYPE_ROUTE,
    TYPE_SECRET,
    names,
    tls,
)
from meshpilot.xds.translate.secrets import root_secret, workload_secret

NOW = datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Issued:
    """A certificate (PEM) and its key, and the key to sign with if it is a CA."""

    cert_pem: bytes
    key_pem: bytes
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def issue(cn: str, issuer: Issued | None = None, *, dns: Sequence[str] = (),
          ca: bool = False, client: bool = False) -> Issued:
    """A certificate for ``cn`` (self-signed when no ``issuer``) with DNS SANs ``dns``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.cert.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(minutes=5))
               .not_valid_after(NOW + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(d) for d in dns]), critical=False)
    if not ca:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem, cert, key)


def tls_secret(name: str, server: Issued, root: Issued, *, namespace: str = "istio-system",
               ca: Issued | None = None) -> Named[Secret]:
    """A ``kubernetes.io/tls`` Secret: the server's chain (leaf, then ``root``) and key,
    and ``ca`` (the roots client certificates are verified against) as ``ca.crt``."""
    data = {"tls.crt": b64(server.cert_pem + root.cert_pem), "tls.key": b64(server.key_pem)}
    if ca is not None:
        data["ca.crt"] = b64(ca.cert_pem)
    secret = Secret.model_validate({"apiVersion": "v1", "kind": "Secret",
                                    "type": "kubernetes.io/tls", "data": data,
                                    "metadata": {"name": name, "namespace": namespace}})
    return Named(namespace, name, secret)


def gateway_snapshot(docs: str, services: Mapping[str, MeshService], *,
                     endpoints: Mapping[str, tuple[Endpoint, ...]] | None = None,
                     secrets: Sequence[Named[Secret]] = (), version: int = 1) -> MeshSnapshot:
    """The mesh a gateway test builds from: the Gateways and VirtualServices of the YAML
    ``docs`` (a namespace left out is ``default``), beside ``services``, their
    ``endpoints`` and the credentials' ``secrets``."""
    named: list[Named[Any]] = []
    for doc in yaml.safe_load_all(docs):
        model = (Gateway if doc["kind"] == "Gateway" else VirtualService).model_validate(doc)
        named.append(Named(model.metadata.namespace or "default", model.metadata.name, model))
    return MeshSnapshot(
        version=version, services=dict(services), endpoints=dict(endpoints or {}),
        gateways=tuple(n for n in named if isinstance(n.obj, Gateway)),
        virtual_services=tuple(n for n in named if isinstance(n.obj, VirtualService)),
        secrets=tuple(secrets))


def inlined(listener: listener_pb2.Listener,
            routes: Mapping[str, route_pb2.RouteConfiguration]) -> listener_pb2.Listener:
    """A copy of ``listener`` whose connection managers carry their route config inline."""
    out = listener_pb2.Listener()
    out.CopyFrom(listener)
    for chain in out.filter_chains:
        for f in chain.filters:
            if f.name != names.HCM_FILTER:
                continue
            manager = hcm.HttpConnectionManager()
            f.typed_config.Unpack(manager)
            if manager.HasField("rds"):
                config = routes[manager.rds.route_config_name]
                manager.ClearField("rds")
                manager.route_config.CopyFrom(config)
                f.typed_config.Pack(manager)
    return out


def static_clusters(clusters: Iterable[cluster_pb2.Cluster],
                    assignments: Mapping[str, Any]) -> list[cluster_pb2.Cluster]:
    """EDS clusters made STATIC, their assignment inline."""
    out = []
    for cluster in clusters:
        c = cluster_pb2.Cluster()
        c.CopyFrom(cluster)
        if c.type == cluster_pb2.Cluster.EDS:
            c.type = cluster_pb2.Cluster.STATIC
            c.ClearField("eds_cluster_config")
            c.load_assignment.CopyFrom(assignments[c.name])
        out.append(c)
    return out


def gateway_bootstrap(node_id: str, listeners: Iterable[listener_pb2.Listener],
                      routes: Iterable[route_pb2.RouteConfiguration],
                      clusters: Sequence[cluster_pb2.Cluster],
                      secrets: Iterable[secret_pb2.Secret],
                      extra_secrets: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    by_name = {r.name: r for r in routes}
    return bootstrap(node_id, [inlined(x, by_name) for x in listeners], clusters,
                     [*(as_dict(s) for s in secrets), *extra_secrets])


def validate_gateway(node: ProxyNode, resources: Mapping[str, Mapping[str, Any]],
                     workload: Issued, root: Issued, work_dir: Path) -> str | None:
    """``envoy --mode validate`` of everything ``build_resources`` gave the gateway
    ``node``, in a static bootstrap: its EDS clusters made STATIC, and beside its own
    secrets the workload ones its auto-mTLS clusters name (``default`` from ``workload``,
    ``ROOTCA`` from ``root``). None when Envoy accepts it, else Envoy's complaint."""
    config = gateway_bootstrap(
        node.id, resources[TYPE_LISTENER].values(), resources[TYPE_ROUTE].values(),
        static_clusters(resources[TYPE_CLUSTER].values(), resources[TYPE_ENDPOINT]),
        resources[TYPE_SECRET].values(), static_workload_secrets(workload, root))
    return validate_bootstrap(config, work_dir)


def static_workload_secrets(workload: Issued, root: Issued) -> list[dict[str, Any]]:
    """The SDS secrets auto mTLS names, as static secrets of a bootstrap: ``default``
    (``workload``'s certificate and key) and ``ROOTCA`` (``root``)."""
    return [{"name": tls.SDS_DEFAULT, "tls_certificate": {
                "certificate_chain": {"inline_bytes": b64(workload.cert_pem)},
                "private_key": {"inline_bytes": b64(workload.key_pem)}}},
            ca_secret(tls.SDS_ROOT, root.cert_pem)]



@dataclass(frozen=True)
class WorkloadMaterial:
    """A proxy's own workload credential, as the control plane gives one: what its
    auto-mTLS clusters name (SDS ``default`` and ``ROOTCA``)."""

    chain_pem: bytes
    key_pem: bytes
    roots_pem: bytes

    @classmethod
    def issued(cls, cn: str = "workload") -> WorkloadMaterial:
        root = issue(f"{cn} root", ca=True)
        leaf = issue(cn, root)
        return cls(leaf.cert_pem, leaf.key_pem, root.cert_pem)

    def secrets(self) -> dict[str, secret_pb2.Secret]:
        """The SDS secrets by name, to add under ``TYPE_SECRET``."""
        return {s.name: s for s in (workload_secret(self), root_secret(self.roots_pem))}
