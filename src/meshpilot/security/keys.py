"""Key pairs the CA and workloads use, and how each is signed with.

ECDSA P-256 is the default for roots and workloads, as in Istio: small certificates,
fast handshakes. RSA is accepted for plugged-in CAs and for CSRs from other tools.
"""

from __future__ import annotations

from typing import Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

KeyType = Literal["EC_P256", "RSA_2048"]
DEFAULT_KEY_TYPE: KeyType = "EC_P256"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

MIN_RSA_BITS = 2048
ACCEPTED_CURVES = ("secp256r1", "secp384r1")


def generate_key(key_type: KeyType = DEFAULT_KEY_TYPE) -> PrivateKey:
    """A fresh private key, in memory only."""
    if key_type == "EC_P256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: what Envoy and Istio's ``ca-key.pem`` read."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """The digest to sign with: matched to the curve's strength, SHA-256 otherwise."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384() if key.curve.key_size <= 384 else hashes.SHA512()
    return hashes.SHA256()


def weak_key_reason(key: object) -> str | None:
    """Why a public key is not one this mesh signs for, or None if it is acceptable."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return f"an RSA key of {key.key_size} bits (at least {MIN_RSA_BITS} needed)"
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ACCEPTED_CURVES:
            return f"an EC key on curve {key.curve.name} (P-256 or P-384 accepted)"
        return None
    return f"a {type(key).__name__} (ECDSA P-256/P-384 or RSA accepted)"


def public_key_der(key: PublicKeyTypes) -> bytes:
    """The SubjectPublicKeyInfo bytes: equal exactly when two keys are one key pair."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
