"""A browser-like HTTP client signed in to a control plane's dashboard, for tests that
read what the dashboard serves without driving a browser."""

from __future__ import annotations

import httpx

from tests.conftest import ControlPlane

CODES = "/apis/meshpilot.io/v1/dashboard/codes"


def signed_in(cp: ControlPlane) -> tuple[httpx.Client, str]:
    """A browser-like client signed in through a fresh link; and the page's CSRF token."""
    assert cp.client is not None
    url = cp.client.post(CODES).json()["url"]
    browser = httpx.Client(trust_env=False, timeout=10.0)
    r = browser.get(url)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/"
    page = browser.get(cp.api + "/dashboard/")
    assert page.status_code == 200
    csrf = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    return browser, csrf
