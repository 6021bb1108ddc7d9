"""The SDS secrets a proxy's Envoy holds, as ``proxy-config secret`` shows them.

Read from the proxy's own admin ``/config_dump`` (``dynamic_active_secrets`` and
``dynamic_warming_secrets``), so the answer is the certificate Envoy presents and the
roots it verifies peers against, not what the control plane meant to send. Each
certificate is parsed here: identity (URI SAN), issuer, serial, validity, and whether
the workload chain reaches one of the roots the proxy trusts.

Invariant: nothing derived from a ``private_key`` field ever leaves this module. Envoy
already redacts keys in its dumps; the items built here carry certificates only, and
:func:`without_keys` drops key fields from a raw dump (``proxy-config all``) as well.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

ACTIVE = "dynamic_active_secrets"
WARMING = "dynamic_warming_secrets"
_KEY_FIELDS = frozenset({"private_key", "password"})
"""Fields of Envoy's TlsCertificate that hold or unlock key material."""


def secret_items(active: Mapping[str, Any], warming: Mapping[str, Any],
                 now: datetime | None = None) -> list[dict[str, Any]]:
    """One item per secret in the two dumps (active first, as Envoy lists them)."""
    moment = now or datetime.now(UTC)
    parsed = [(entry, status, *_certificates_of(entry.get("secret") or {}))
              for status, dump in (("ACTIVE", active), ("WARMING", warming))
              for entry in dump.get("configs", [])]
    roots = [cert for _, _, kind, certs in parsed if kind == "CA" for cert in certs]
    return [_secret_item(entry, status, kind, certs, roots, moment)
            for entry, status, kind, certs in parsed]


def _secret_item(entry: Mapping[str, Any], status: str, kind: str,
                 certs: list[x509.Certificate], roots: list[x509.Certificate],
                 now: datetime) -> dict[str, Any]:
    secret = entry.get("secret") or {}
    item: dict[str, Any] = {
        "name": entry.get("name") or secret.get("name", ""),
        "type": kind,
        "status": status,
        "versionInfo": entry.get("version_info", ""),
        "lastUpdated": entry.get("last_updated", ""),
        "certificates": [certificate_json(c, now) for c in certs],
    }
    if kind == "Cert Chain":
        leaf = item["certificates"][0] if certs else {}
        item["identity"] = next(iter(leaf.get("uriSans", [])), None)
        item["validNow"] = bool(certs) and all(c["validNow"] for c in item["certificates"])
        item["trustedRoot"] = _trusted_root(certs, roots)
    return item


def _certificates_of(secret: Mapping[str, Any]) -> tuple[str, list[x509.Certificate]]:
    """("Cert Chain", the chain) for a TLS certificate, ("CA", the roots) for a
    validation context; the key beside a chain is never read."""
    if "tls_certificate" in secret:
        source = (secret.get("tls_certificate") or {}).get("certificate_chain") or {}
        return "Cert Chain", _load(source)
    if "validation_context" in secret:
        source = (secret.get("validation_context") or {}).get("trusted_ca") or {}
        return "CA", _load(source)
    return "Unknown", []


def _load(source: Mapping[str, Any]) -> list[x509.Certificate]:
    """The PEM certificates of an Envoy DataSource given inline (how SDS delivers them)."""
    if "inline_bytes" in source:
        data = base64.b64decode(source["inline_bytes"])
    elif "inline_string" in source:
        data = str(source["inline_string"]).encode()
    else:
        return []
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []


def certificate_json(cert: x509.Certificate, now: datetime) -> dict[str, Any]:
    """What a person checks in a certificate (no key, public or private)."""
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serialNumber": _serial(cert.serial_number),
        "notBefore": _time(not_before),
        "notAfter": _time(not_after),
        "validNow": not_before <= now <= not_after,
        "isCA": _is_ca(cert),
        **_sans(cert),
    }


def _serial(number: int) -> str:
    """Hex, whole bytes (a leading zero kept): as Envoy's ``/certs`` writes serials."""
    text = f"{number:x}"
    return "0" + text if len(text) % 2 else text


def _sans(cert: x509.Certificate) -> dict[str, list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {"uriSans": [], "dnsSans": [], "ipSans": []}
    return {
        "uriSans": san.get_values_for_type(x509.UniformResourceIdentifier),
        "dnsSans": san.get_values_for_type(x509.DNSName),
        "ipSans": [str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
    }


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _trusted_root(chain: list[x509.Certificate], roots: list[x509.Certificate]) -> str | None:
    """The subject of the trusted root the chain's signatures lead to (each certificate
    signed by the next, the last by the root), or None when they lead to none."""
    if not chain:
        return None
    if not all(_signed_by(cert, issuer) for cert, issuer in pairwise(chain)):
        return None
    top = chain[-1]
    root = next((r for r in roots if r == top or _signed_by(top, r)), None)
    return root.subject.rfc4514_string() if root is not None else None


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def without_keys(value: Any) -> Any:
    """``value`` (a JSON dump) with every key field left out, at any depth."""
    if isinstance(value, dict):
        return {k: without_keys(v) for k, v in value.items() if k not in _KEY_FIELDS}
    if isinstance(value, list):
        return [without_keys(v) for v in value]
    return value
