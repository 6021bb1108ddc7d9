"""What the security end-to-end tests build and ask: workloads with their own service
accounts, Istio security objects, clients in and out of the mesh, the real ``openssl
s_client``, certificates and JSON Web Tokens made here.

Clients, as Istio's tasks use them:

- the mesh proxy (``mesh.http``): an in-mesh client whose identity is
  ``cluster.local/ns/default/sa/default``;
- a pod (:func:`as_pod`): requests sent through that pod's sidecar, exactly as its app
  sends them (its ``HTTP_PROXY``), so they carry the pod's identity;
- no mesh member at all (:func:`direct`): plaintext straight to the pod's
  ``POD_IP:containerPort``, where its sidecar listens.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from meshpilot.mesh.model import OUTBOUND_PROXY_PORT
from meshpilot.proxy.admin import AdminClient
from tests.builders import demo_app_container, deployment, from_yaml, metadata, service
from tests.conftest import wait_for
from tests.e2e.mesh import Mesh
from tests.e2e.telemetry_helpers import fetch_metrics

Body = dict[str, Any]
T = TypeVar("T")
SECURITY = "security.istio.io/v1"
PORT = 8080
DENIED = "RBAC: access denied"
MESH_PROXY_PRINCIPAL = "cluster.local/ns/default/sa/default"


# --- objects ----------------------------------------------------------------------------


def workload(app: str, namespace: str, *, service_account: str | None = None,
             version: str = "v1") -> list[Body]:
    """Deployment ``app`` (one demo app pod ``app: <app>, version: <version>``, running as
    ``service_account``: ``default`` when None, as in Kubernetes) and its Service on port
    8080."""
    pod_spec = {"serviceAccountName": service_account} if service_account else None
    labels = {"app": app, "version": version}
    return [
        deployment(app, containers=[demo_app_container(version, port=PORT)], labels=labels,
                   selector={"app": app}, namespace=namespace, pod_spec=pod_spec),
        service(app, port=PORT, target_port="http", namespace=namespace),
    ]


def peer_authentication(namespace: str, mode: str, *, name: str = "default",
                        selector: dict[str, str] | None = None) -> Body:
    """A PeerAuthentication setting ``mode`` for ``namespace`` (``istio-system``: the mesh),
    or for the workloads ``selector`` picks."""
    spec: Body = {"mtls": {"mode": mode}}
    if selector is not None:
        spec = {"selector": {"matchLabels": selector}, **spec}
    return {"apiVersion": SECURITY, "kind": "PeerAuthentication",
            "metadata": metadata(name, namespace), "spec": spec}


def authorization_policy(name: str, namespace: str, spec: str | Body) -> Body:
    """An AuthorizationPolicy whose ``spec`` is given as YAML (as Istio's tasks show it)
    or as a body; ``{}`` allows nothing."""
    return {"apiVersion": SECURITY, "kind": "AuthorizationPolicy",
            "metadata": metadata(name, namespace),
            "spec": from_yaml(spec) if isinstance(spec, str) else spec}


def request_authentication(name: str, namespace: str, issuer: str, jwks: str, *,
                           app: str) -> Body:
    """A RequestAuthentication for the pods ``app: <app>``: tokens of ``issuer`` checked
    against the inline key set ``jwks``."""
    return {"apiVersion": SECURITY, "kind": "RequestAuthentication",
            "metadata": metadata(name, namespace),
            "spec": {"selector": {"matchLabels": {"app": app}},
                     "jwtRules": [{"issuer": issuer, "jwks": jwks}]}}


# --- changes ----------------------------------------------------------------------------


def _changed(mesh: Mesh, change: Callable[[], object]) -> None:
    """``change`` made, then until the mesh has a new version with it and every proxy
    holds it. (Readiness right after a write still describes the previous version until
    the debounced rebuild has run, so waiting on it alone can return too early.)"""
    before = mesh.readiness()["meshVersion"]
    change()
    wait_for(lambda: mesh.readiness()["meshVersion"] > before, 15, interval=0.05,
             message="a new mesh version with the change")
    mesh.converge()


def applied(mesh: Mesh, *docs: Body) -> None:
    """``docs`` (security objects: each changes what proxies enforce) applied, and every
    proxy enforcing them."""
    _changed(mesh, lambda: mesh.apply(*docs))


def deleted(mesh: Mesh, kind: str, name: str, namespace: str) -> None:
    """The ``security.istio.io`` object ``kind`` ``name`` deleted, and no proxy enforcing
    it any more."""
    _changed(mesh, lambda: mesh.delete(kind, name, namespace, group="security.istio.io"))


def becomes(probe: Callable[[], T], expected: T, timeout: float = 10.0) -> None:
    """After a policy change: until ``probe()`` (what the callers get) is ``expected``,
    then once more (it holds). A connection a client's sidecar already had open to the
    server serves one more request under the policy it was opened with while Envoy
    drains it (so in Istio: a listener change drains the old filter chains'
    connections), so the first answers after a change may still be the old ones."""
    seen: list[T] = []

    def settled() -> bool:
        seen.append(probe())
        return seen[-1] == expected

    try:
        wait_for(settled, timeout, interval=0.1, message=f"answers {expected}")
    except AssertionError:
        raise AssertionError(f"expected {expected}; the last answers: {seen[-3:]}") from None
    again = probe()
    assert again == expected, again


# --- pods and clients -------------------------------------------------------------------


def pod(mesh: Mesh, namespace: str, app: str) -> Body:
    """The one running pod of ``app`` in ``namespace``."""
    pods = [p for p in mesh.pods(namespace)
            if p["metadata"]["labels"].get("app") == app and p["status"]["phase"] == "Running"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in mesh.pods(namespace)]
    return pods[0]


def pod_address(mesh: Mesh, namespace: str, app: str) -> str:
    """``POD_IP:8080`` of ``app``'s pod: its sidecar's inbound listener."""
    return f"{pod(mesh, namespace, app)['status']['podIP']}:{PORT}"


def as_pod(mesh: Mesh, namespace: str, app: str) -> httpx.Client:
    """A client whose requests leave through the sidecar of ``app``'s pod (the proxy its
    app's ``HTTP_PROXY`` names): they carry that pod's identity."""
    return httpx.Client(proxy=sidecar_proxy(mesh, namespace, app), trust_env=False,
                        timeout=15.0)


def sidecar_proxy(mesh: Mesh, namespace: str, app: str) -> str:
    """The outbound HTTP proxy of ``app``'s sidecar (``http://POD_IP:15001``)."""
    return f"http://{pod(mesh, namespace, app)['status']['podIP']}:{OUTBOUND_PROXY_PORT}"


def direct(mesh: Mesh, namespace: str, app: str) -> httpx.Client:
    """A client outside the mesh: plaintext HTTP straight to ``app``'s pod address."""
    return httpx.Client(base_url=f"http://{pod_address(mesh, namespace, app)}",
                        trust_env=False, timeout=5.0)


def status(client: httpx.Client, url: str, **request: Any) -> str:
    """The status a request gets (``"200"``), or the name of the error that ended it."""
    try:
        return str(client.request(request.pop("method", "GET"), url, **request).status_code)
    except httpx.HTTPError as exc:
        return type(exc).__name__


def url(app: str, namespace: str, path: str = "/") -> str:
    """``http://<app>.<namespace>:8080<path>``: the Service, as an in-mesh client names it."""
    return f"http://{app}.{namespace}:{PORT}{path}"


# --- telemetry --------------------------------------------------------------------------


def requests_counted(mesh: Mesh, **labels: str) -> float:
    """``istio_requests_total`` summed over the series of /metrics that carry ``labels``."""
    return sum(value for name, got, value in fetch_metrics(mesh.endpoints["metrics"])
               if name == "istio_requests_total"
               and all(got.get(k) == v for k, v in labels.items()))


def series(mesh: Mesh, **labels: str) -> list[dict[str, str]]:
    """The label sets of the ``istio_requests_total`` series that carry ``labels``."""
    return [got for name, got, _ in fetch_metrics(mesh.endpoints["metrics"])
            if name == "istio_requests_total"
            and all(got.get(k) == v for k, v in labels.items())]


def durations_counted(mesh: Mesh, **labels: str) -> float:
    """How many requests ``istio_request_duration_milliseconds`` holds (its ``_count``)
    summed over the series of /metrics that carry ``labels``."""
    return sum(value for name, got, value in fetch_metrics(mesh.endpoints["metrics"])
               if name == "istio_request_duration_milliseconds_count"
               and all(got.get(k) == v for k, v in labels.items()))


def wait_counted(mesh: Mesh, n: float, timeout: float = 15.0, **labels: str) -> float:
    """Until /metrics counts at least ``n`` requests with ``labels`` (telemetry reads the
    proxies every second); what it counts then, one more reading later."""
    try:
        wait_for(lambda: requests_counted(mesh, **labels) >= n, timeout, interval=0.3,
                 message=f"{n} requests counted with {labels}")
    except AssertionError:
        raise AssertionError(
            f"{requests_counted(mesh, **labels)} of {n} requests counted with {labels}; "
            f"series: {series(mesh, **{k: v for k, v in labels.items() if k == 'reporter'})}"
        ) from None
    time.sleep(1.5)
    return requests_counted(mesh, **labels)


# --- certificates -----------------------------------------------------------------------


def workload_serials(admin_socket: str) -> set[str]:
    """The serial numbers of the workload certificates (those with a SPIFFE URI SAN) the
    Envoy whose admin socket is ``admin_socket`` holds now (Envoy's ``/certs``)."""
    with AdminClient(admin_socket, timeout=5.0) as admin:
        certs = admin.certs()
    return {cert["serial_number"]
            for context in certs["certificates"]
            for cert in context.get("cert_chain", [])
            if any(san.get("uri", "").startswith("spiffe://")
                   for san in cert.get("subject_alt_names", []))}


@dataclass(frozen=True)
class Issuer:
    """A CA: its certificate and key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def load(cls, ca_dir: Path) -> Issuer:
        """The CA in Istio's files (``ca-cert.pem``, ``ca-key.pem``) in ``ca_dir``."""
        cert = x509.load_pem_x509_certificate((ca_dir / "ca-cert.pem").read_bytes())
        key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey), type(key)
        return cls(cert, key)

    @classmethod
    def self_signed(cls, name: str) -> Issuer:
        """A new root CA named ``name``, unknown to the mesh."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(minutes=1))
                .not_valid_after(now + timedelta(hours=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False),
                    critical=True)
                .sign(key, hashes.SHA256()))
        return cls(cert, key)

    def workload_cert(self, spiffe_id: str, directory: Path) -> tuple[Path, Path]:
        """A client certificate for ``spiffe_id`` (its URI SAN) signed by this CA, and its
        key, written to ``directory``; their paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(x509.Name([]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(minutes=1))
                .not_valid_after(now + timedelta(hours=1))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(spiffe_id)]), critical=True)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([
                    x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
                    x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / "cert.pem", directory / "key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path


@dataclass(frozen=True)
class Handshake:
    """What ``openssl s_client`` printed and how it exited."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def answered(self) -> bool:
        """Whether an HTTP response came back over the connection."""
        return "HTTP/1.1 " in self.stdout

    @property
    def verified(self) -> bool:
        """Whether the server's certificate verified against the given CA file."""
        return "Verify return code: 0 (ok)" in self.stdout

    @property
    def server_certificate(self) -> x509.Certificate:
        """The first certificate the server presented."""
        begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
        start = self.stdout.index(begin)
        pem = self.stdout[start:self.stdout.index(end, start) + len(end)]
        return x509.load_pem_x509_certificate(pem.encode())


def s_client(address: str, *, ca_file: Path, alpn: str = "istio",
             cert: tuple[Path, Path] | None = None) -> Handshake:
    """The real ``openssl s_client -connect address -alpn alpn``, verifying the server
    against ``ca_file``, presenting ``cert`` (certificate, key) if given, and sending one
    HTTP request over the connection once it is up."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl command is needed (Debian's openssl package)"
    command = [openssl, "s_client", "-connect", address, "-alpn", alpn,
               "-CAfile", str(ca_file), "-showcerts", "-ign_eof"]
    if cert is not None:
        command += ["-cert", str(cert[0]), "-key", str(cert[1])]
    request = "GET /healthz HTTP/1.1\r\nHost: openssl\r\nConnection: close\r\n\r\n"
    proc = subprocess.run(command, input=request, capture_output=True, text=True, timeout=20)
    return Handshake(proc.returncode, proc.stdout, proc.stderr)


# --- JSON Web Tokens --------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenIssuer:
    """A JWT issuer with an RSA key: its key set (JWKS) and RS256 tokens it signs."""

    issuer: str
    key: rsa.RSAPrivateKey
    kid: str = "test-key"

    @classmethod
    def new(cls, issuer: str) -> TokenIssuer:
        return cls(issuer, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwks(self) -> str:
        numbers = self.key.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        return json.dumps({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig",
                                     "kid": self.kid, "n": _b64url(n), "e": _b64url(e)}]})

    def token(self, subject: str = "alice", *, lifetime: float = 3600.0,
              **claims: Any) -> str:
        """A token for ``subject`` from this issuer, valid for ``lifetime`` seconds (from
        now; negative: expired), with more ``claims``."""
        now = int(time.time())
        body = {"iss": self.issuer, "sub": subject, "iat": now, "exp": now + int(lifetime),
                **claims}
        head = _b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": self.kid}).encode())
        payload = _b64url(json.dumps(body).encode())
        signed = f"{head}.{payload}".encode()
        signature = self.key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{payload}.{_b64url(signature)}"
