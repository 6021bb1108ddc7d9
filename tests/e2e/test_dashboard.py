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
import yaml
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tests.builders import builtin_checks, demo_deployment
from tests.builders import canary as canary_body
from tests.conftest import ControlPlane, run_cli, serve_http
from tests.e2e import myapp
from tests.e2e.mesh import API, URL, Mesh
from tests.e2e.rollouts import Rollout

CHROMIUM = "/usr/bin/chromium"
PODINFO = "podinfo"
LIVE_SECONDS = 5_000  # ms a page may take to show a change pushed over its event stream


def _podinfo(version: str, args: str = "") -> dict[str, Any]:
    return demo_deployment(PODINFO, version, app=PODINFO, select_version=False, args=args)


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


def step_mirrored_traffic_is_drawn(mesh: Mesh, page: Page) -> None:
    """Istio's mirroring task: v1 serves, v2 gets copies (here of half the requests)."""
    mirrored = myapp.split(v1=100)
    mirrored["spec"]["http"][0].update({"mirror": {"host": "myapp", "subset": "v2"},
                                        "mirrorPercentage": {"value": 50.0}})
    mesh.apply(mirrored)
    expect(_service_row(page, "myapp").locator(".split")).to_contain_text(
        "v1 100% · mirror v2 50%", timeout=LIVE_SECONDS)
    expect(page.locator("#graph")).to_have_attribute("data-mirrors", "wl:default/myapp-v2")
    mesh.apply(myapp.split(v1=50, v2=50))
    expect(_service_row(page, "myapp").locator(".split")).to_contain_text("v1 50% / v2 50%",
                                                                          timeout=LIVE_SECONDS)
    expect(page.locator("#graph")).to_have_attribute("data-mirrors", "")


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
    checks = card.locator("table.checks tbody")
    expect(checks.locator("tr").first).to_contain_text("request-success-rate")
    expect(checks).to_contain_text(">= 99%")
    expect(checks.locator("tr", has_text="request-success-rate")).to_contain_text("pass")
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


def _click(card: Locator, command: str) -> None:
    """Press a rollout button and accept the confirmation it asks for."""
    card.page.once("dialog", lambda dialog: dialog.accept())
    card.get_by_role("button", name=command).click()
    expect(card.locator(".result")).to_contain_text(f"{command} accepted",
                                                    timeout=LIVE_SECONDS)


def step_pause_resume_and_a_bad_canary_fails_on_the_page(
        mesh: Mesh, page: Page, shots: Path) -> None:
    """Flagger's bad-revision case seen in the browser: paused and resumed by its
    buttons, then rolled back by its failing success rate, which the page names."""
    rollout = Rollout(mesh, PODINFO)
    card = page.locator(f'article[data-rollout="default/{PODINFO}"]')
    mesh.apply(_podinfo("v3", args="--error-rate 0.5"))
    rollout.wait(lambda b: b["canaryWeight"] > 0 and b["phase"] == "Progressing", timeout=60,
                 what="the bad revision's first step")
    _click(card, "pause")
    expect(card.locator(".phase")).to_have_text("Progressing (paused)", timeout=LIVE_SECONDS)
    assert rollout.get()["paused"] is True
    _click(card, "resume")
    expect(card.locator(".phase")).to_have_text("Progressing", timeout=LIVE_SECONDS)
    deadline = time.monotonic() + 60
    while rollout.get()["phase"] != "Failed":
        assert time.monotonic() < deadline, rollout.events()
        mesh.versions(f"http://{PODINFO}:8080/", 10)
    expect(card.locator(".phase")).to_have_text("Failed", timeout=LIVE_SECONDS)
    failing = card.locator("table.checks tbody tr", has_text="request-success-rate")
    expect(failing).to_contain_text("fail")
    expect(card.locator("figure.chart[data-check='request-success-rate']")).to_have_attribute(
        "aria-label", re.compile(r"request-success-rate per analysis run: .*\d.*"
                                 r"\(threshold >= 99%\)"))
    assert card.locator("figure.chart canvas").count() > 0  # uPlot drew it
    card.locator(".history summary").click()
    expect(card.locator(".history tbody tr").first).to_contain_text("rolled-back")
    expect(card.locator(".history tbody tr").first).to_contain_text("request-success-rate")
    card.screenshot(path=shots / "dashboard-rollout-failed.png")


def step_retry_then_abort_from_the_page(mesh: Mesh, page: Page) -> None:
    rollout = Rollout(mesh, PODINFO)
    card = page.locator(f'article[data-rollout="default/{PODINFO}"]')
    _click(card, "retry")
    rollout.wait(lambda b: b["phase"] == "Progressing", timeout=30, what="the retried rollout")
    expect(card.locator(".phase")).to_have_text(re.compile(r"Progressing"),
                                                timeout=LIVE_SECONDS)
    _click(card, "abort")
    final = rollout.wait_phase("Failed", timeout=30)
    assert final["history"][-1]["reason"] == "aborted by user", final["history"]
    expect(card.locator(".phase")).to_have_text("Failed", timeout=LIVE_SECONDS)
    assert final["canaryWeight"] == 0


def step_a_proxy_shows_its_config_on_click(page: Page) -> None:
    page.locator('#proxy-table tr[data-proxy="mesh-proxy"]').click()
    body = page.locator("#proxy-config-body")
    expect(page.locator("#proxy-config-title")).to_have_text("Config of mesh-proxy")
    expect(body).to_contain_text("myapp.default.svc.cluster.local", timeout=LIVE_SECONDS)
    page.locator("#proxy-config .tabs").get_by_role("button", name="clusters").click()
    expect(body).to_contain_text("outbound|8080|v1|myapp.default.svc.cluster.local",
                                 timeout=LIVE_SECONDS)


def _apply_in_page(page: Page, text: str, button: str = "Apply") -> Locator:
    page.locator("#apply-text").fill(text)
    page.locator("#config").get_by_role("button", name=button, exact=True).click()
    result = page.locator("#apply-result")
    expect(result).not_to_contain_text("applying", timeout=LIVE_SECONDS)
    expect(result).not_to_contain_text("checking", timeout=LIVE_SECONDS)
    return result


def step_config_lists_objects_and_applies_yaml(mesh: Mesh, page: Page, shots: Path) -> None:
    """The Config page: objects with findings, and YAML applied through the same
    all-or-nothing validation as the CLI. The DestinationRule below is valid to
    meshpilot and refused by Envoy (a Maglev table size must be prime, as the proxy-status
    NACK case): the Proxies page shows each Envoy's own refusal until it is fixed."""
    rows = page.locator("#config-table tbody")
    expect(rows.locator('tr[data-object="VirtualService/default/myapp"]')).to_be_visible(
        timeout=LIVE_SECONDS)
    before = mesh.api.get("/apis/networking.istio.io/v1/namespaces/default/"
                          "destinationrules/myapp").json()["metadata"]["resourceVersion"]

    bad = yaml.safe_dump(myapp.subsets()).replace("name: v2", "name: v2\n  bogus: 1")
    result = _apply_in_page(page, bad)
    expect(result).to_contain_text("refused (422): nothing was changed")
    expect(result).to_contain_text("dashboard.yaml:")
    expect(result).to_contain_text("bogus")
    after = mesh.api.get("/apis/networking.istio.io/v1/namespaces/default/"
                         "destinationrules/myapp").json()["metadata"]["resourceVersion"]
    assert after == before  # refused: nothing changed

    maglev = {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user",
                                                  "maglev": {"tableSize": 1000}}}}
    text = yaml.safe_dump(myapp.subsets(traffic_policy=maglev))
    expect(_apply_in_page(page, text, "Dry run")).to_contain_text(
        "DestinationRule default/myapp configured (dry run)")
    expect(_apply_in_page(page, text)).to_contain_text("DestinationRule default/myapp configured")
    nacks = page.locator("#nacks")
    expect(nacks).to_contain_text("mesh-proxy NACKed Cluster", timeout=15_000)
    expect(nacks).to_contain_text("maglev")
    page.locator("#proxies").screenshot(path=shots / "dashboard-nack.png")
    fixed = text.replace("tableSize: 1000", "tableSize: 1021")
    expect(_apply_in_page(page, fixed)).to_contain_text("DestinationRule default/myapp configured")
    try:
        expect(nacks.locator("li")).to_have_count(0, timeout=15_000)
    except AssertionError:
        raise AssertionError(nacks.inner_text() + str(mesh.proxies())) from None
    page.locator("#config").screenshot(path=shots / "dashboard-config.png")


def step_namespace_filter_hides_other_namespaces(mesh: Mesh, page: Page) -> None:
    mesh.apply({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "team-b"}, "data": {"a": "1"}})
    rows = page.locator("#config-table tbody tr")
    theirs = rows.filter(has_text="team-b")
    expect(theirs).to_have_count(1, timeout=LIVE_SECONDS)
    gateway = page.locator("#proxy-table tbody tr[data-proxy='istio-ingressgateway']")
    expect(gateway).to_have_count(1)
    page.locator("#namespace").select_option("default")
    expect(theirs).to_have_count(0)
    expect(gateway).to_have_count(0)
    expect(rows.filter(has_text="VirtualService").first).to_be_visible()
    expect(page.locator(f'article[data-rollout="default/{PODINFO}"]')).to_be_visible()
    page.locator("#namespace").select_option("team-b")
    expect(rows).to_have_count(1)
    expect(page.locator(f'article[data-rollout="default/{PODINFO}"]')).to_have_count(0)
    page.locator("#namespace").select_option("")
    expect(gateway).to_have_count(1)


def step_sign_out_ends_the_session(mesh: Mesh, page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=LIVE_SECONDS)
    again = page.request.get(mesh.cp.api + "/dashboard/config")
    assert again.status == 401  # the browser's cookie opens nothing any more


def test_the_dashboard_as_a_person_sees_it(mesh: Mesh, browser: Browser, page: Page,
                                          shots: Path) -> None:
    step_without_the_cookie_a_browser_gets_the_login_page(mesh, browser, shots)
    step_graph_shows_myapp_v1_and_v2_and_the_90_10_split(page, shots)
    step_weight_change_shows_without_reload(mesh, page)
    step_mirrored_traffic_is_drawn(mesh, page)
    step_forged_cross_site_post_is_refused(mesh, browser, page)
    step_promote_button_promotes_the_paused_canary(mesh, page, shots)
    step_proxies_show_what_each_envoy_acked(mesh, page, shots)
    step_a_proxy_shows_its_config_on_click(page)
    step_config_lists_objects_and_applies_yaml(mesh, page, shots)
    step_namespace_filter_hides_other_namespaces(mesh, page)
    step_pause_resume_and_a_bad_canary_fails_on_the_page(mesh, page, shots)
    step_retry_then_abort_from_the_page(mesh, page)
    step_sign_out_ends_the_session(mesh, page)
