"""Certificates and keys made in-process for TLS Secret tests: a root, a leaf it
issued, and a key that belongs to neither."""

from __future__ import annotations

import base64
import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime.datetime.now(datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(cn: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, Any] | None = None,
                *, ca: bool = False) -> x509.Certificate:
    issuer_cn, issuer_key = issuer or (cn, key)
    return (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(issuer_cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(minutes=1))
            .not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    crypt = (serialization.BestAvailableEncryption(password) if password
             else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             crypt)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA = certificate("shop root", CA_KEY, ca=True)
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())
LEAF = certificate("shop.test", LEAF_KEY, ("shop root", CA_KEY))
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())

CHAIN = pem(LEAF, CA)
KEY = key_pem(LEAF_KEY)
