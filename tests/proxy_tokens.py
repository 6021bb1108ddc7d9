"""The xDS credential the tests' proxies present, and the server check that admits them."""

from __future__ import annotations

from meshpilot.security.proxy_tokens import ProxyTokens
from meshpilot.xds.auth import Authenticator, token_authenticator

TOKENS = ProxyTokens(b"tests-only proxy token key")


def authenticator() -> Authenticator:
    """The check a control plane makes, with the tests' key."""
    return token_authenticator(TOKENS.verify_proxy)
