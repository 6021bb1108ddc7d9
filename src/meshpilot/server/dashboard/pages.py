"""The two HTML pages, from the templates shipped in the package.

The dashboard page carries its session's CSRF token in a ``<meta>`` tag for the page's
script to send back; the login page carries nothing, so it may be shown to anyone.
"""

from __future__ import annotations

import html
from pathlib import Path

CSRF_SLOT = "{{csrf}}"
MESSAGE_SLOT = "{{message}}"
SIGN_IN = "<p>Run <code>meshpilot dashboard</code> and open the link it prints.</p>"


def static_dir() -> Path:
    """The page's assets, shipped as package data."""
    return Path(__file__).parent / "static"


def _template(name: str) -> str:
    return (Path(__file__).parent / "templates" / name).read_text(encoding="utf-8")


def dashboard_page(csrf: str) -> bytes:
    return _template("index.html").replace(CSRF_SLOT, html.escape(csrf)).encode()


def login_page(message: str = "") -> bytes:
    """The sign-in page; ``message`` (plain text) says why the link did not work."""
    lead = f"<p class=warn>{html.escape(message)}</p>" if message else ""
    return _template("login.html").replace(MESSAGE_SLOT, lead + SIGN_IN).encode()
