"""Checks on one value of an AuthorizationPolicy field, as Istio matches it.

Istio compares every string of a rule as an exact value, a prefix (``abc*``), a suffix
(``*abc``) or presence (``*``), so a ``*`` anywhere else is not a glob: it would be
compared literally and never match. Istio refuses such values, and so does meshpilot,
before a policy that looks protective protects nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from meshpilot.validation import codes
from meshpilot.validation.finding import Finding, Path

_WILDCARD_FORMS = ("an exact value, a prefix ('abc*'), a suffix ('*abc') or '*' alone "
                   "(any value), with one '*' at most")
SPIFFE = "spiffe://"

ValueCheck = Callable[[Path, str], Finding | None]


def wildcard(path: Path, what: str, value: str) -> Finding | None:
    """Refuse a ``*`` that is not the whole value, its first or its last character."""
    if value.count("*") > 1 or "*" in value[1:-1]:
        return Finding(codes.BAD_WILDCARD, path,
                       f"{what} {value!r} uses '*' where Istio does not match it; write "
                       f"{_WILDCARD_FORMS}")
    return None


def pattern(what: str) -> ValueCheck:
    """The wildcard check for values described as ``what`` in messages."""
    return lambda path, value: wildcard(path, what, value)


def empty(path: Path, what: str, value: str) -> Finding | None:
    if value == "":
        return Finding(codes.INVALID_VALUE, path,
                       f"empty {what}: Istio refuses empty values; use '*' to match any value")
    return None


def spiffe_principal(path: Path, value: str) -> Finding | None:
    """Istio compares principals without the ``spiffe://`` scheme, so a value written with
    it never matches: the rule looks right and does nothing."""
    if value.startswith(SPIFFE):
        return Finding(codes.SPIFFE_PRINCIPAL, path,
                       f"principal {value!r} starts with {SPIFFE}, which Istio leaves out of "
                       f"the principals it matches, so it matches no peer; write "
                       f"{value[len(SPIFFE):]!r}")
    return None


def principal(path: Path, value: str) -> Finding | None:
    return spiffe_principal(path, value) or wildcard(path, "principal", value)


def ip_block(path: Path, value: str) -> Finding | None:
    """A single address or a CIDR block, IPv4 or IPv6 (host bits may be set, as Istio
    allows: ``10.1.2.3/8`` is ``10.0.0.0/8``)."""
    try:
        if "/" in value:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return Finding(codes.BAD_IP, path,
                       f"{value!r} is not an IP address or CIDR block; write e.g. 203.0.113.4, "
                       "10.0.0.0/8 or 2001:db8::/32")
    return None


def port(path: Path, value: str) -> Finding | None:
    if not value.isascii() or not value.isdigit():
        return Finding(codes.INVALID_VALUE, path,
                       f"port {value!r} is not a number; write a port from 1 to 65535, as a "
                       "string ('8080')")
    if not 1 <= int(value) <= 65535:
        return Finding(codes.OUT_OF_RANGE, path, f"port {value} is outside 1-65535")
    return None


def method(path: Path, value: str) -> Finding | None:
    """HTTP methods are case-sensitive and Envoy compares them exactly, so ``get`` never
    matches a GET request; warned, not refused, since a custom method may be any token."""
    if value != value.upper():
        return Finding(codes.LOWERCASE_METHOD, path,
                       f"method {value!r} is not upper case; requests carry methods in upper "
                       f"case and are compared exactly, so write {value.upper()!r}")
    return wildcard(path, "method", value)


def request_path(path: Path, value: str) -> Finding | None:
    """Istio's ``{*}``/``{**}`` templates need Envoy's URI template matcher, which meshpilot
    does not program; such a path is refused rather than compared literally."""
    if "{" in value or "}" in value:
        return Finding(codes.PATH_TEMPLATE, path,
                       f"path {value!r} is a path template ({{*}} or {{**}}), which meshpilot "
                       "does not support; write an exact path, a prefix ('/api/*'), a suffix "
                       "('*.json') or '*'")
    return wildcard(path, "path", value)


def service_account(path: Path, value: str) -> Finding | None:
    """``<namespace>/<name>`` or ``<name>`` (the policy's namespace), never a wildcard."""
    if "*" in value:
        return Finding(codes.BAD_WILDCARD, path,
                       f"service account {value!r} has a '*'; serviceAccounts take exact "
                       "names only (use principals or namespaces for patterns)")
    namespace, _, name = value.rpartition("/")
    if value.count("/") > 1 or not name or (value.count("/") == 1 and not namespace):
        return Finding(codes.INVALID_VALUE, path,
                       f"service account {value!r} is not 'NAMESPACE/NAME' or 'NAME'")
    return None
