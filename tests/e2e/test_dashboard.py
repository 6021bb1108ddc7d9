"""The web dashboard in a real browser (the system's Chromium, driven by Playwright)
against a real control plane and mesh: what a person sees.

One mesh and one browser serve the whole file: myapp's v1 and v2 behind a 90/10
VirtualService with traffic through the mesh proxy, and a Canary over podinfo paused
mid-rollout. So that xdist cannot spread them over workers (each would start its own
mesh and browser), the checks are steps of one test, in the order a person would go.

Screenshots of each page are taken every run; with ``MESHPILOT_DASHBOARD_SCREENSHOTS=DIR``
they are kept in DIR (``docs/`` for the README).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.builders import builtin_checks, demo_deployment
from tests.builders import canary as canary_body
from tests.conftest import ControlPlane, run_cli, serve_http
from tests.e2e import myapp
from tests.e2e.mesh import API, URL, Mesh
from tests.e2e.rollouts import Rollout

CHROMIUM = "/usr/bin/chromium"
PODINFO = "podinfo"
LIVE_SECONDS = 5_000  # ms a page may take to show a change pushed over its event stream


def _podinfo(version: str) -> dict[str, Any]:
    return demo_deployment(PODINFO, version, app=PODINFO, select_version=False)


def _podinfo_canary() -> dict[str, Any]:
    return canary_body(PODINFO, port=8080, target_port="http",
                       annotations={"meshpilot.io/min-requests": "5"},
                       progressDeadlineSeconds=120,
                       analysis={"interval": "3s", "threshold": 5, "maxWeight": 50,
                                 "stepWeight": 10, "metrics": builtin_checks("10s")})


def _judged(mesh: Mesh, rollout: Rollout, timeout: float = 30.0) -> None:
    """Requests to podinfo (the canary gets its share of them) until a check passed."""
    deadline = time.monotonic() + timeout
    while not any(c["verdict"] == "pass" for c in rollout.get()["checks"]):
        assert time.monotonic() < deadline, f"no check passed: {rollout.get()['events']}"
        mesh.versions(f"http://{PODINFO}:8080/", 20)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """myapp v1/v2 at 90/10 with traffic, and podinfo's Canary paused while it runs."""
    cp = ControlPlane(tmp_path_factory.mktemp("dashboard") / "mesh")
    try:
        m = Mesh(cp.start())
        m.apply(myapp.version("v1"), myapp.version("v2"), myapp.service(), myapp.subsets(),
                myapp.split(v1=90, v2=10), _podinfo("v1"), _podinfo_canary())
        rollout = Rollout(m, PODINFO)
        rollout.wait_phase("Initialized", timeout=60)
        m.converge(timeout=60)
        m.apply(_podinfo("v2"))  # a new revision: the rollout starts
        rollout.wait(lambda b: b["canaryWeight"] > 0, timeout=60, what="the first step")
        _judged(m, rollout)
        rollout.command("pause")
        m.versions(URL, 40)  # myapp's traffic, for the graph's edges
        yield m
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-proxy-server"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where screenshots go; copied to $MESHPILOT_DASHBOARD_SCREENSHOTS at the end."""
    where = tmp_path_factory.mktemp("shots")
    yield where
    keep = os.environ.get("MESHPILOT_DASHBOARD_SCREENSHOTS")
    if keep:
        for shot in where.glob("*.png"):
            shutil.copy(shot, Path(keep) / shot.name)


def _sign_in_link(mesh: Mesh) -> str:
    done = run_cli("dashboard", state_dir=mesh.cp.state_dir)
    assert done.returncode == 0, done.stderr
    found = re.search(r"(http://\S+/dashboard/login\?code=\S+)", done.stdout)
    assert found, done.stdout
    return found.group(1)


@pytest.fixture(scope="module")
def page(mesh: Mesh, browser: Browser) -> Iterator[Page]:
    """A browser tab signed in through the link `meshpilot dashboard` printed."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.goto(_sign_in_link(mesh))
    assert tab.url == mesh.cp.api + "/dashboard/"
    expect(tab.locator("#live")).to_have_text("live", timeout=LIVE_SECONDS)
    try:
        yield tab
    finally:
        context.close()


def _service_row(page: Page, name: str) -> Any:
    return page.locator(f'#services tr[data-service="svc:default/{name}"]')


def step_without_the_cookie_a_browser_gets_the_login_page(
        mesh: Mesh, browser: Browser, shots: Path) -> None:
    context = browser.new_context()
    try:
        tab = context.new_page()
        response = tab.goto(mesh.cp.api + "/dashboard/")
        assert response is not None and response.status == 401
        expect(tab.get_by_role("heading", name="Sign in")).to_be_visible()
        expect(tab.locator("body")).to_contain_text("meshpilot dashboard")
        assert tab.locator("#graph").count() == 0
        tab.screenshot(path=shots / "dashboard-login.png")
        used = tab.goto(mesh.cp.api + "/dashboard/login?code=not-a-code")
        assert used is not None and used.status == 401
        expect(tab.locator("body")).to_contain_text("expired or was already used")
    finally:
        context.close()


def step_graph_shows_myapp_v1_and_v2_and_the_90_10_split(page: Page, shots: Path) -> None:
    row = _service_row(page, "myapp")
    expect(row.locator(".split")).to_contain_text("v1 90% / v2 10%")
    expect(row).to_contain_text("myapp-v1 (v1)")
    expect(row).to_contain_text("myapp-v2 (v2)")
    graph = page.locator("#graph")
    expect(graph).to_have_attribute(
        "aria-label", re.compile(r"default/myapp: myapp-v1 \(v1\), myapp-v2 \(v2\); "
                                 r"split (\w+: )?v1 90% / v2 10%"))
    assert graph.locator("canvas").count() > 0  # Cytoscape drew it
    edges = page.locator("#edges tbody")
    expect(edges).to_contain_text("mesh-proxy", timeout=LIVE_SECONDS)
    for version in ("v1", "v2"):
        expect(edges.locator("tr", has_text="myapp").filter(has_text=version).first
               ).to_contain_text("100.0%", timeout=LIVE_SECONDS)
    page.locator("#mesh").screenshot(path=shots / "dashboard-mesh.png")


def step_weight_change_shows_without_reload(mesh: Mesh, page: Page) -> None:
    page.evaluate("window.sameDocument = true")
    mesh.apply(myapp.split(v1=50, v2=50))
    expect(_service_row(page, "myapp").locator(".split")).to_contain_text(
        "v1 50% / v2 50%", timeout=LIVE_SECONDS)
    expect(page.locator("#graph")).to_have_attribute(
        "aria-label", re.compile(r"default/myapp: .*split (\w+: )?v1 50% / v2 50%"))
    assert page.evaluate("window.sameDocument") is True  # pushed, not reloaded


def step_forged_cross_site_post_is_refused(mesh: Mesh, browser: Browser, page: Page) -> None:
    """A page on another origin (same site: 127.0.0.1, so the SameSite cookie still goes
    with it) makes the signed-in browser POST a rollout command: refused, nothing done."""
    target = f"{mesh.cp.api}{API}/namespaces/default/rollouts/{PODINFO}/resume"
    form = (f'<form method="POST" action="{target}"></form>'
            "<script>document.forms[0].submit()</script>").encode()

    class Attacker(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(form)

        def log_message(self, *args: Any) -> None:
            pass

    with serve_http(Attacker) as port:
        forged = page.context.new_page()  # same browser profile: the cookie is there
        try:
            with forged.expect_response(target) as answer:
                forged.goto(f"http://127.0.0.1:{port}/")
            assert answer.value.status == 403
            assert answer.value.request.header_value("cookie") is not None
        finally:
            forged.close()
    assert Rollout(mesh, PODINFO).get()["paused"] is True


def step_promote_button_promotes_the_paused_canary(
        mesh: Mesh, page: Page, shots: Path) -> None:
    card = page.locator(f'article[data-rollout="default/{PODINFO}"]')
    expect(card.locator(".phase")).to_have_text("Progressing (paused)")
    expect(card.locator("progress")).to_have_attribute("value", re.compile(r"[1-5]0"))
    expect(card.locator("tbody tr").first).to_contain_text("request-success-rate")
    expect(card.locator("tbody")).to_contain_text(">= 99%")
    expect(card.locator("tbody tr", has_text="request-success-rate")).to_contain_text("pass")
    expect(card.locator(".events")).to_contain_text("paused by user")
    page.locator("#rollouts").screenshot(path=shots / "dashboard-rollouts.png")

    asked: list[str] = []

    def confirm(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    card.get_by_role("button", name="promote").click()
    expect(card.locator(".result")).to_contain_text("promote accepted", timeout=LIVE_SECONDS)
    assert asked == [f"promote the rollout of default/{PODINFO}?"]
    rollout = Rollout(mesh, PODINFO)
    final = rollout.wait_phase("Succeeded", timeout=30, fail_on=("Failed",))
    assert final["history"][-1]["outcome"] == "promoted"
    expect(card.locator(".phase")).to_have_text("Succeeded", timeout=LIVE_SECONDS)


def step_proxies_show_what_each_envoy_acked(mesh: Mesh, page: Page, shots: Path) -> None:
    status = {p["name"]: p for p in mesh.api.get(f"{API}/proxies").json()["proxies"]}
    row = page.locator('#proxy-table tr[data-proxy="mesh-proxy"]')
    expect(row).to_contain_text("(synced)", timeout=LIVE_SECONDS)
    routes = status["mesh-proxy"]["types"]["RouteConfiguration"]["acked"]
    expect(row.locator("td").nth(7)).to_have_text(re.compile(r"\S+"))
    assert routes and row.locator("td.nack").count() == 0
    names = set(page.locator("#proxy-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.proxy)"))
    assert {"mesh-proxy", "istio-ingressgateway"} <= names, names
    assert any(n.startswith("myapp-v1-") for n in names), names  # the sidecars too
    page.locator("#proxies").screenshot(path=shots / "dashboard-proxies.png")


def test_the_dashboard_as_a_person_sees_it(mesh: Mesh, browser: Browser, page: Page,
                                          shots: Path) -> None:
    step_without_the_cookie_a_browser_gets_the_login_page(mesh, browser, shots)
    step_graph_shows_myapp_v1_and_v2_and_the_90_10_split(page, shots)
    step_weight_change_shows_without_reload(mesh, page)
    step_forged_cross_site_post_is_refused(mesh, browser, page)
    step_promote_button_promotes_the_paused_canary(mesh, page, shots)
    step_proxies_show_what_each_envoy_acked(mesh, page, shots)
