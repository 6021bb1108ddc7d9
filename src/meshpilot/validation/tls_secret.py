"""A ``kubernetes.io/tls`` Secret holds a certificate chain and the private key of its
first certificate, in PEM, as a gateway serves them.

A pair that does not belong together is the mistake users make most (a renewed
certificate with the old key), and Envoy would refuse it only when a listener names the
Secret, far from the apply that caused it. So it is refused at apply, naming the key at
fault (``data.tls.key``) and what is wrong. Values are credentials: no message repeats
them, nor the text of a parser's exception.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from meshpilot.validation import codes
from meshpilot.validation.diagnostics import format_path
from meshpilot.validation.finding import Finding, Path

CERT, KEY, CA = "tls.crt", "tls.key", "ca.crt"
_PEM_CERT = "PEM certificates (-----BEGIN CERTIFICATE----- blocks)"


def tls_secret_findings(body: Mapping[str, Any]) -> list[Finding]:
    """Errors in a TLS Secret's ``tls.crt``, ``tls.key`` and ``ca.crt``; none for other
    types. A value that is not base64 is left to the model's own error."""
    if body.get("type") != "kubernetes.io/tls":
        return []
    values = _values(body)
    found = [
        Finding(codes.MISSING_FIELD, ("data",),
                f"a kubernetes.io/tls Secret needs data.{key} (the {what}, PEM)")
        for key, what in ((CERT, "certificate chain"), (KEY, "private key"))
        if key not in values
    ]
    chain = _chain(values.get(CERT), found)
    key = _private_key(values.get(KEY), found)
    _chain(values.get(CA), found)
    if chain and key is not None:
        found.extend(_pair(chain, key, values[CERT][0], values[KEY][0]))
    return found


def _values(body: Mapping[str, Any]) -> dict[str, tuple[Path, bytes | None]]:
    """Each key's path and decoded value (None if it does not decode); ``stringData``
    wins over ``data``, as Kubernetes merges them."""
    out: dict[str, tuple[Path, bytes | None]] = {}
    data = body.get("data")
    for key, value in (data.items() if isinstance(data, dict) else ()):
        out[str(key)] = (("data", str(key)), _decode(value))
    plain = body.get("stringData")
    for key, value in (plain.items() if isinstance(plain, dict) else ()):
        text = value.encode("utf-8") if isinstance(value, str) else None
        out[str(key)] = (("stringData", str(key)), text)
    return out


def _decode(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _chain(entry: tuple[Path, bytes | None] | None, found: list[Finding]
           ) -> list[x509.Certificate]:
    """The certificates of ``entry``: none if it is absent, or refused (added to
    ``found``)."""
    if entry is None or entry[1] is None:
        return []
    path, raw = entry
    try:
        return x509.load_pem_x509_certificates(raw)
    except ValueError:
        found.append(Finding(codes.BAD_TLS_SECRET, path,
                             f"the value of {format_path(path)} is not {_PEM_CERT} that parse"))
        return []


def _private_key(entry: tuple[Path, bytes | None] | None, found: list[Finding]
                 ) -> PrivateKeyTypes | None:
    """The private key of ``entry``: None if it is absent, or refused (added to
    ``found``)."""
    if entry is None or entry[1] is None:
        return None
    path, raw = entry
    try:
        return serialization.load_pem_private_key(raw, password=None)
    except TypeError:
        problem = ("is an encrypted private key; Envoy reads keys without a passphrase, so "
                   "store it decrypted (openssl pkey -in KEY -out KEY.plain)")
    except UnsupportedAlgorithm:
        problem = "is a key of a type Envoy does not use (RSA, ECDSA or Ed25519 needed)"
    except ValueError:
        problem = ("is not a PEM private key that parses (-----BEGIN PRIVATE KEY-----, "
                   "RSA or EC PRIVATE KEY)")
    found.append(Finding(codes.BAD_TLS_SECRET, path, f"the value of {format_path(path)} {problem}"))
    return None


def _pair(
    chain: list[x509.Certificate], key: PrivateKeyTypes, cert_path: Path, key_path: Path
) -> Iterator[Finding]:
    """The key must be the first certificate's: Envoy serves that one and signs with
    the key."""
    mine = _spki(key.public_key())
    if _spki(chain[0].public_key()) == mine:
        return
    later = next((i for i, c in enumerate(chain[1:], 2) if _spki(c.public_key()) == mine), None)
    if later is not None:
        hint = (f"it matches certificate {later} of {format_path(cert_path)}; put the "
                "certificate of this key first, then its issuers")
    else:
        hint = ("it belongs to another certificate; replace the key with the one this "
                "certificate was issued for, or the certificate with one issued for this key")
    yield Finding(codes.BAD_TLS_SECRET, key_path,
                  f"the private key in {format_path(key_path)} does not match the first "
                  f"certificate in "
                  f"{format_path(cert_path)}: {hint}")


def _spki(key: PublicKeyTypes) -> bytes:
    """SubjectPublicKeyInfo bytes: equal exactly when two keys are one key pair."""
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
