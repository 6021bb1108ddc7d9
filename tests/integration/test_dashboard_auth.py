"""The dashboard's sign-in and request checks over real HTTP, against a real control
plane: the one-time link, the cookie it sets, the login page for everyone else, and the
CSRF and Origin checks on state-changing requests made with the cookie."""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable

import httpx
from tests.conftest import ControlPlane, read_endpoints
from tests.dashboard_session import signed_in

CODES = "/apis/meshpilot.io/v1/dashboard/codes"
PROMOTE = "/apis/meshpilot.io/v1/namespaces/default/rollouts/myapp/promote"


def test_link_works_once_and_sets_a_strict_httponly_cookie(
        control_plane_factory: Callable[..., ControlPlane]) -> None:
    cp = control_plane_factory("state", args=["--no-mesh"])
    endpoints = read_endpoints(cp.state_dir)
    assert endpoints is not None and endpoints["dashboard"] == cp.api + "/dashboard/"
    assert cp.client is not None
    url = cp.client.post(CODES).json()["url"]
    assert url.startswith(cp.api + "/dashboard/login?code=")
    with httpx.Client(trust_env=False) as browser:
        first = browser.get(url)
        cookie = first.headers["set-cookie"]
        assert first.status_code == 303
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    with httpx.Client(trust_env=False) as other:
        again = other.get(url)
        assert again.status_code == 401 and "expired or was already used" in again.text
        assert "set-cookie" not in again.headers
    assert cp.token not in cp.log() and url.split("code=")[1] not in cp.log()


def test_without_the_cookie_the_login_page_not_the_data(
        control_plane_factory: Callable[..., ControlPlane]) -> None:
    cp = control_plane_factory("state", args=["--no-mesh"])
    with httpx.Client(base_url=cp.api, trust_env=False) as anyone:
        for path in ("/dashboard/", "/dashboard/events"):
            r = anyone.get(path)
            assert r.status_code == 401 and "meshpilot dashboard" in r.text, path
            assert "csrf-token" not in r.text and "event:" not in r.text
        assert anyone.get("/apis/meshpilot.io/v1/rollouts").status_code == 401
        assert anyone.post(CODES).status_code == 401
    with httpx.Client(base_url=cp.api, trust_env=False,
                      cookies={"meshpilot_dashboard": "guess"}) as guesser:
        assert guesser.get("/dashboard/").status_code == 401


def test_cookie_posts_need_the_csrf_token_and_this_origin(
        control_plane_factory: Callable[..., ControlPlane]) -> None:
    cp = control_plane_factory("state", args=["--no-mesh"])
    browser, csrf = signed_in(cp)
    try:
        here = {"Origin": cp.api, "X-Meshpilot-CSRF": csrf}
        assert browser.get(cp.api + "/apis").status_code == 200  # reads with the cookie
        assert browser.post(cp.api + PROMOTE).status_code == 403
        assert browser.post(cp.api + PROMOTE, headers={"Origin": cp.api}).status_code == 403
        wrong = {**here, "X-Meshpilot-CSRF": csrf[:-1] + ("B" if csrf.endswith("A") else "A")}
        assert browser.post(cp.api + PROMOTE, headers=wrong).status_code == 403
        evil = {**here, "Origin": "http://127.0.0.1:1"}
        assert browser.post(cp.api + PROMOTE, headers=evil).status_code == 403
        cross = {**here, "Sec-Fetch-Site": "same-site"}
        assert browser.post(cp.api + PROMOTE, headers=cross).status_code == 403
        # through every check: the API answers (no rollouts without a mesh: 404)
        assert browser.post(cp.api + PROMOTE, headers=here).status_code == 404
        # a signed-in browser cannot mint sign-in codes; the bearer token can
        assert browser.post(cp.api + CODES, headers=here).status_code == 403
    finally:
        browser.close()


def test_an_open_dashboard_does_not_hold_up_shutdown(
        control_plane_factory: Callable[..., ControlPlane]) -> None:
    """uvicorn waits up to 5 s for open responses; the event stream ends at once."""
    cp = control_plane_factory("state", args=["--no-mesh"])
    browser, _ = signed_in(cp)
    opened = threading.Event()

    def follow() -> None:
        with contextlib.suppress(httpx.HTTPError), browser.stream(
                "GET", cp.api + "/dashboard/events") as events:
            for line in events.iter_lines():
                if line.startswith("event: state"):
                    opened.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    try:
        assert opened.wait(10), "no state event"
        started = time.monotonic()
        assert cp.terminate() == 0
        assert time.monotonic() - started < 4.0  # 5.5 s when the stream held on
        reader.join(timeout=5)
        assert not reader.is_alive()  # the stream ended with the server
    finally:
        browser.close()


def test_over_tls_the_cookie_is_secure_and_the_origin_https(
        control_plane_factory: Callable[..., ControlPlane]) -> None:
    cp = control_plane_factory("state", args=["--no-mesh", "--tls"])
    endpoints = read_endpoints(cp.state_dir)
    assert endpoints is not None and endpoints["dashboard"] == cp.api + "/dashboard/"
    assert cp.api.startswith("https://")
    ca = ssl.create_default_context(cafile=cp.state_dir / "api-ca.pem")
    with httpx.Client(base_url=cp.api, trust_env=False, verify=ca,
                      headers={"Authorization": f"Bearer {cp.token}"}) as cli:
        url = cli.post(CODES).json()["url"]
    assert url.startswith(cp.api + "/dashboard/login?code=")
    with httpx.Client(trust_env=False, verify=ca) as browser:
        signed_in = browser.get(url)
        assert signed_in.status_code == 303
        assert "Secure" in signed_in.headers["set-cookie"]
        page = browser.get(cp.api + "/dashboard/")
        csrf = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        plain = {"Origin": cp.api.replace("https://", "http://"), "X-Meshpilot-CSRF": csrf}
        assert browser.post(cp.api + PROMOTE, headers=plain).status_code == 403
        here = {"Origin": cp.api, "X-Meshpilot-CSRF": csrf}
        assert browser.post(cp.api + PROMOTE, headers=here).status_code == 404


def test_sign_out_needs_the_csrf_token_and_ends_the_session(
        control_plane_factory: Callable[..., ControlPlane]) -> None:
    cp = control_plane_factory("state", args=["--no-mesh"])
    browser, csrf = signed_in(cp)
    try:
        logout = cp.api + "/dashboard/logout"
        assert browser.post(logout, headers={"Origin": cp.api}).status_code == 403
        assert browser.get(cp.api + "/dashboard/").status_code == 200  # still signed in
        cookie = browser.cookies["meshpilot_dashboard"]
        r = browser.post(logout, headers={"Origin": cp.api, "X-Meshpilot-CSRF": csrf})
        assert r.status_code == 200 and r.json() == {"signedOut": True}
        assert 'meshpilot_dashboard=""' in r.headers["set-cookie"]
        # the old cookie, sent again, opens nothing
        with httpx.Client(base_url=cp.api, trust_env=False,
                          cookies={"meshpilot_dashboard": cookie}) as replay:
            assert replay.get("/dashboard/").status_code == 401
            assert replay.get("/dashboard/config").status_code == 401
            assert replay.get("/apis/meshpilot.io/v1/rollouts").status_code == 401
    finally:
        browser.close()


def test_config_view_shows_objects_with_their_findings(
        control_plane_factory: Callable[..., ControlPlane]) -> None:
    """The Config page's data: what analyze reports, per stored object."""
    cp = control_plane_factory("state", args=["--no-mesh"])
    assert cp.client is not None
    vs = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
          "metadata: {name: reviews, namespace: default}\n"
          "spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n")
    r = cp.client.post("/apis/meshpilot.io/v1/apply",
                       json={"sources": [{"file": "vs.yaml", "text": vs}]})
    assert r.status_code == 200, r.text
    analyzed = cp.client.get("/apis/meshpilot.io/v1/diagnostics").json()["diagnostics"]
    browser, _ = signed_in(cp)
    try:
        shown = browser.get(cp.api + "/dashboard/config").json()
    finally:
        browser.close()
    row = next(o for o in shown["objects"] if o["kind"] == "VirtualService")
    assert row["name"] == "reviews" and row["namespace"] == "default"
    mine = "VirtualService default/reviews"
    expected = sorted(d["code"] for d in analyzed if d["object"] == mine)
    assert "MP2001" in expected, analyzed  # a host with no Service behind it
    assert sorted(f["code"] for f in row["findings"]) == expected
    assert shown["revision"] >= 1
