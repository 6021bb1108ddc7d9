"""The real ``meshpilot`` CLI, run as a subprocess against a real control plane."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.conftest import ControlPlane, read_endpoints, run_cli

import meshpilot
from meshpilot.cli.client import pid_alive

REVIEWS = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
"""

RATINGS_AND_SERVICE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
  namespace: prod
spec:
  hosts: [ratings]
  http:
  - route:
    - destination:
        host: ratings
---
apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080}
"""

DETAILS_JSON = json.dumps({
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "details", "namespace": "default"},
    "spec": {"hosts": ["details"], "http": [{"route": [{"destination": {"host": "details"}}]}]},
}, indent=2)

BAD = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bad
spec:
  hosts: [bad]
  http:
  - route:
    - destination:
        host: bad
      weight: -5
"""

LABEL = "virtualservice.networking.istio.io"


def _pid_gone(pid: int) -> bool:
    return not pid_alive(pid)


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state dir for control planes the CLI starts with ``up``; stopped at teardown."""
    state = tmp_path / "cli-state"
    yield state
    endpoints = read_endpoints(state)
    if endpoints and not _pid_gone(int(endpoints["pid"])):
        os.kill(int(endpoints["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not _pid_gone(int(endpoints["pid"])) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _pid_gone(int(endpoints["pid"])):
            os.kill(int(endpoints["pid"]), signal.SIGKILL)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


# --- lifecycle -----------------------------------------------------------------------

def test_up_status_down(state_dir: Path) -> None:
    out = ok(run_cli("up", state_dir=state_dir))
    endpoints = read_endpoints(state_dir)
    assert endpoints is not None
    assert endpoints["api"].startswith("http://127.0.0.1:")
    assert endpoints["api"] in out
    assert "meshpilot is up" in out

    status = ok(run_cli("status", state_dir=state_dir))
    assert "running" in status
    assert meshpilot.__version__ in status
    assert str(state_dir) in status
    assert endpoints["api"] in status

    again = ok(run_cli("up", state_dir=state_dir))
    assert "already up" in again
    assert read_endpoints(state_dir) == endpoints  # the same process, not a second one

    down = ok(run_cli("down", state_dir=state_dir))
    assert "is down" in down
    assert _pid_gone(int(endpoints["pid"]))
    assert read_endpoints(state_dir) is None  # a clean stop removes endpoints.json
    status = run_cli("status", state_dir=state_dir)
    assert status.returncode != 0
    assert "no control plane is running" in status.stderr
    assert "not running" in ok(run_cli("down", state_dir=state_dir))


def test_status_without_a_control_plane_fails(tmp_path: Path) -> None:
    result = run_cli("status", state_dir=tmp_path / "never-started")
    assert result.returncode == 1
    assert "no control plane is running" in result.stderr
    result = run_cli("get", "vs", state_dir=tmp_path / "never-started")
    assert result.returncode == 1


def test_status_of_a_killed_control_plane_fails(control_plane: ControlPlane) -> None:
    ok(run_cli("status", state_dir=control_plane.state_dir))
    control_plane.kill()  # endpoints.json stays behind, naming a dead pid
    assert read_endpoints(control_plane.state_dir) is not None
    result = run_cli("status", state_dir=control_plane.state_dir)
    assert result.returncode == 1
    assert "no control plane is running" in result.stderr


# --- apply ---------------------------------------------------------------------------

def test_apply_file_created_configured_unchanged(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    state = control_plane.state_dir
    path = write(tmp_path, "reviews.yaml", REVIEWS)
    assert ok(run_cli("apply", "-f", str(path), state_dir=state)).strip() == (
        f"{LABEL}/reviews created")
    assert ok(run_cli("apply", "-f", str(path), state_dir=state)).strip() == (
        f"{LABEL}/reviews unchanged")
    write(tmp_path, "reviews.yaml", REVIEWS + "    timeout: 3s\n")
    assert ok(run_cli("apply", "-f", "reviews.yaml", state_dir=state)).strip() == (
        f"{LABEL}/reviews configured")
    obj = control_plane.client.get(
        "/apis/networking.istio.io/v1/namespaces/default/virtualservices/reviews").json()
    assert obj["spec"]["http"][0]["timeout"] == "3s"
    assert obj["metadata"]["generation"] == 2

    write(tmp_path, "reviews.yaml", REVIEWS + "    timeout: 9s\n")
    dry = ok(run_cli("apply", "--dry-run", "-f", str(path), state_dir=state))
    assert f"{LABEL}/reviews configured (dry run)" in dry
    assert control_plane.client.get(
        "/apis/networking.istio.io/v1/namespaces/default/virtualservices/reviews"
    ).json()["spec"]["http"][0]["timeout"] == "3s"


def test_apply_directory_multi_document_and_json(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    conf = tmp_path / "conf"
    write(conf, "a-reviews.yaml", REVIEWS)
    write(conf, "b-multi.yml", RATINGS_AND_SERVICE)
    write(conf, "nested/c-details.json", DETAILS_JSON)
    write(conf, "notes.txt", "not config")
    out = ok(run_cli("apply", "-f", str(conf), state_dir=control_plane.state_dir))
    assert out.splitlines() == [
        f"{LABEL}/reviews created",
        f"{LABEL}/ratings created",
        "service/reviews created",
        f"{LABEL}/details created",
    ]
    c = control_plane.client
    assert len(c.get("/apis/networking.istio.io/v1/virtualservices").json()["items"]) == 3
    assert c.get("/api/v1/namespaces/default/services/reviews").json()["spec"]["ports"][0][
        "port"] == 9080
    assert c.get("/version").json()["revision"] == 1  # one all-or-nothing commit


def test_apply_from_stdin(control_plane: ControlPlane) -> None:
    out = ok(run_cli("apply", "-f", "-", state_dir=control_plane.state_dir,
                     input=RATINGS_AND_SERVICE))
    assert out.splitlines() == [f"{LABEL}/ratings created", "service/reviews created"]
    out = ok(run_cli("apply", "-f", "-", state_dir=control_plane.state_dir, input=DETAILS_JSON))
    assert out.strip() == f"{LABEL}/details created"


def test_apply_errors_name_file_and_line_and_apply_nothing(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    conf = tmp_path / "conf"
    write(conf, "good.yaml", REVIEWS)
    bad = write(conf, "bad.yaml", BAD)
    result = run_cli("apply", "-f", str(conf), state_dir=control_plane.state_dir)
    assert result.returncode == 1
    assert f"{bad}:11:" in result.stderr
    assert "MP0013" in result.stderr
    assert "spec.http[0].route[0].weight" in result.stderr
    assert "created" not in result.stdout
    assert control_plane.client.get("/version").json()["revision"] == 0

    broken = write(tmp_path, "broken.yaml", "kind: [oops\n")
    result = run_cli("apply", "-f", str(broken), state_dir=control_plane.state_dir)
    assert result.returncode == 1
    assert f"{broken}:" in result.stderr and "MP0001" in result.stderr

    result = run_cli("apply", "-f", str(tmp_path / "missing.yaml"),
                     state_dir=control_plane.state_dir)
    assert result.returncode == 1
    assert "no such file" in result.stderr
    assert control_plane.client.get("/version").json()["revision"] == 0


def test_apply_stale_resource_version_is_a_conflict(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    state = control_plane.state_dir
    ok(run_cli("apply", "-f", "-", state_dir=state, input=REVIEWS))
    ok(run_cli("apply", "-f", "-", state_dir=state, input=REVIEWS + "    timeout: 1s\n"))
    stale = REVIEWS.replace("  namespace: default\n",
                            "  namespace: default\n  resourceVersion: \"1\"\n")
    path = write(tmp_path, "stale.yaml", stale)
    result = run_cli("apply", "-f", str(path), state_dir=state)
    assert result.returncode == 1
    assert "MP0020" in result.stderr
    assert f"{path}:6:" in result.stderr


# --- get / describe / delete ---------------------------------------------------------------

@pytest.fixture
def populated(control_plane: ControlPlane) -> ControlPlane:
    ok(run_cli("apply", "-f", "-", state_dir=control_plane.state_dir,
               input=REVIEWS + "---\n" + RATINGS_AND_SERVICE))
    return control_plane


def test_get_table_and_namespaces(populated: ControlPlane) -> None:
    state = populated.state_dir
    table = ok(run_cli("get", "vs", state_dir=state))
    header, *rows = table.strip().splitlines()
    assert header.split()[:3] == ["NAME", "GATEWAYS", "HOSTS"]
    assert [r.split()[0] for r in rows] == ["reviews"]

    prod = ok(run_cli("get", "virtualservices", "-n", "prod", state_dir=state))
    assert [r.split()[0] for r in prod.strip().splitlines()[1:]] == ["ratings"]

    everywhere = ok(run_cli("get", "vs", "-A", state_dir=state))
    header, *rows = everywhere.strip().splitlines()
    assert header.split()[:2] == ["NAMESPACE", "NAME"]
    assert sorted((r.split()[0], r.split()[1]) for r in rows) == [
        ("default", "reviews"), ("prod", "ratings")]

    one = ok(run_cli("get", "vs", "ratings", "-n", "prod", state_dir=state))
    assert "ratings" in one and "reviews" not in one
    names = ok(run_cli("get", "svc", "-o", "name", state_dir=state))
    assert names.split() == ["service/reviews"]

    empty = run_cli("get", "dr", state_dir=state)
    assert empty.returncode == 0
    assert "No destinationrules found" in empty.stderr

    missing = run_cli("get", "vs", "nope", state_dir=state)
    assert missing.returncode == 1
    assert "not found" in missing.stderr
    unknown = run_cli("get", "virtualservise", state_dir=state)
    assert unknown.returncode == 1
    assert "VirtualService" in unknown.stderr  # did you mean


def test_get_yaml_and_json(populated: ControlPlane) -> None:
    state = populated.state_dir
    listing = yaml.safe_load(ok(run_cli("get", "virtualservices", "-o", "yaml",
                                        state_dir=state)))
    assert listing["kind"] == "VirtualServiceList"
    assert [i["metadata"]["name"] for i in listing["items"]] == ["reviews"]
    assert listing["items"][0]["spec"]["hosts"] == ["reviews"]

    one = json.loads(ok(run_cli("get", "vs", "ratings", "-n", "prod", "-o", "json",
                                state_dir=state)))
    assert one["kind"] == "VirtualService"
    assert one["metadata"]["namespace"] == "prod"
    assert one["metadata"]["resourceVersion"] == "1"
    assert one["spec"]["http"][0]["route"][0]["destination"]["host"] == "ratings"

    everything = json.loads(ok(run_cli("get", "vs", "-A", "-o", "json", state_dir=state)))
    assert len(everything["items"]) == 2
    bad = run_cli("get", "vs", "-o", "xml", state_dir=state)
    assert bad.returncode == 1


def test_describe_shows_spec_and_diagnostics(populated: ControlPlane) -> None:
    state = populated.state_dir
    out = ok(run_cli("describe", "vs", "ratings", "-n", "prod", state_dir=state))
    assert "Name:" in out and "ratings" in out
    assert "Namespace:" in out and "prod" in out
    assert "Spec:" in out
    assert "hosts:" in out and "- ratings" in out
    assert "Diagnostics:" in out
    diag = out[out.index("Diagnostics:"):]
    assert "MP2001" in diag  # no Service behind host ratings in namespace prod

    # reviews has a Service behind it
    out = ok(run_cli("describe", "virtualservice", "reviews", state_dir=state))
    assert "Diagnostics: <none>" in out
    assert run_cli("describe", "vs", "nope", state_dir=state).returncode == 1


def test_delete_by_name_and_by_file(populated: ControlPlane, tmp_path: Path) -> None:
    state = populated.state_dir
    assert ok(run_cli("delete", "vs", "reviews", state_dir=state)).strip() == (
        f"{LABEL}/reviews deleted")
    assert run_cli("get", "vs", "reviews", state_dir=state).returncode == 1

    missing = run_cli("delete", "vs", "reviews", state_dir=state)
    assert missing.returncode == 1
    assert "MP0021" in missing.stderr
    assert ok(run_cli("delete", "vs", "reviews", "--ignore-not-found", state_dir=state)) == ""

    path = write(tmp_path, "multi.yaml", RATINGS_AND_SERVICE)
    # The Service is referenced by nothing now, the VirtualService is in prod
    out = ok(run_cli("delete", "-f", str(path), state_dir=state))
    assert out.splitlines() == [f"{LABEL}/ratings deleted", "service/reviews deleted"]
    assert populated.client.get("/apis/networking.istio.io/v1/virtualservices").json()[
        "items"] == []
    assert populated.client.get("/api/v1/services").json()["items"] == []
    assert run_cli("delete", state_dir=state).returncode == 1


def test_delete_file_with_a_missing_object_deletes_nothing(
    populated: ControlPlane, tmp_path: Path
) -> None:
    path = write(tmp_path, "both.yaml", REVIEWS + "---\n" + BAD)
    result = run_cli("delete", "-f", str(path), state_dir=populated.state_dir)
    assert result.returncode == 1
    assert "MP0021" in result.stderr
    assert ok(run_cli("get", "vs", "reviews", state_dir=populated.state_dir))


ALERTING = """\
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {name: on-call, namespace: shop}
spec:
  type: slack
  channel: on-call-alerts
  address: https://hooks.slack.com/services/T0/B0/XYZ
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: web, namespace: shop}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  service: {port: 80}
  analysis:
    interval: 10s
    stepWeight: 10
    alerts:
    - {name: on-call, severity: error, providerRef: {name: on-call}}
    - {name: qa, severity: warn, providerRef: {name: qa-discord}}
"""


def test_alert_providers_apply_list_and_delete_like_any_kind(
    control_plane: ControlPlane,
) -> None:
    """AlertProvider is served as Flagger's CRD names it (alertproviders.flagger.app);
    a providerRef naming no AlertProvider is warned about at apply (MP2025)."""
    state = control_plane.state_dir
    applied = run_cli("apply", "-f", "-", state_dir=state, input=ALERTING)
    assert "alertprovider.flagger.app/on-call created" in ok(applied)
    assert "MP2025" in applied.stderr and "shop/qa-discord" in applied.stderr
    assert "alerts[0]" not in applied.stderr  # on-call exists
    header, *rows = ok(run_cli("get", "alertproviders", "-n", "shop", state_dir=state)
                       ).strip().splitlines()
    assert header.split() == ["NAME", "TYPE", "AGE"]
    assert rows[0].split()[:2] == ["on-call", "slack"]
    one = yaml.safe_load(ok(run_cli("get", "alertprovider", "on-call", "-n", "shop", "-o",
                                    "yaml", state_dir=state)))
    assert one["spec"]["channel"] == "on-call-alerts"
    assert control_plane.client.get(
        "/apis/flagger.app/v1beta1/namespaces/shop/alertproviders/on-call").status_code == 200
    assert ok(run_cli("delete", "alertproviders.flagger.app", "on-call", "-n", "shop",
                      state_dir=state)).strip() == "alertprovider.flagger.app/on-call deleted"
    described = ok(run_cli("describe", "canary", "web", "-n", "shop", state_dir=state))
    assert described.count("MP2025") == 2  # both providers missing now


# --- analyze ----------------------------------------------------------------------------

def test_analyze_works_offline(tmp_path: Path) -> None:
    nowhere = tmp_path / "no-control-plane"
    clean = tmp_path / "clean"
    write(clean, "reviews.yaml", REVIEWS)
    write(clean, "multi.yaml", RATINGS_AND_SERVICE)
    write(clean, "details.json", DETAILS_JSON)
    result = run_cli("analyze", "-f", str(clean), state_dir=nowhere)
    assert result.returncode == 0, result.stderr
    assert "4 object(s) in 3 file(s) are valid" in result.stdout

    broken = tmp_path / "broken"
    write(broken, "reviews.yaml", REVIEWS)
    bad = write(broken, "bad.yaml", BAD)
    result = run_cli("analyze", "-f", str(broken), state_dir=nowhere)
    assert result.returncode == 1
    assert f"{bad}:11:" in result.stderr
    assert "MP0013" in result.stderr
    assert "1 error(s)" in result.stderr

    result = run_cli("analyze", "-f", "-", state_dir=nowhere, input=BAD)
    assert result.returncode == 1
    assert "<stdin>:11:" in result.stderr
    assert not nowhere.exists()  # analyze never starts or touches a control plane


SPIFFE_POLICY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: orders, namespace: shop}
spec:
  rules:
  - from:
    - source:
        principals: ["spiffe://cluster.local/ns/shop/sa/web"]
    when:
    - key: request.headers[x-tenant]
      values: [acme]
"""


def test_analyze_shows_security_warnings_and_errors(tmp_path: Path) -> None:
    nowhere = tmp_path / "no-control-plane"
    policy = write(tmp_path, "policy.yaml", SPIFFE_POLICY)
    result = run_cli("analyze", "-f", str(policy), state_dir=nowhere)
    assert result.returncode == 0, result.stderr  # a warning does not fail analyze
    assert f"warning {policy}:8:" in result.stderr and "MP2005" in result.stderr
    assert "'cluster.local/ns/shop/sa/web'" in result.stderr
    assert "1 object(s) in 1 file(s) are valid, 1 warning(s)" in result.stdout

    bad = write(tmp_path, "bad.yaml", SPIFFE_POLICY.replace("request.headers", "request.header"))
    result = run_cli("analyze", "-f", str(bad), state_dir=nowhere)
    assert result.returncode == 1
    assert f"error {bad}:10:" in result.stderr and "MP0034" in result.stderr
    assert "'request.header[x-tenant]'" in result.stderr  # brackets printed as written
    assert "1 error(s)" in result.stderr


def test_apply_and_describe_show_peer_authentication_conflicts(
    control_plane: ControlPlane,
) -> None:
    state = control_plane.state_dir
    docs = "---\n".join(
        f"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        f"metadata: {{name: {name}, namespace: istio-system}}\nspec: {{mtls: {{mode: STRICT}}}}\n"
        for name in ("mesh-b", "mesh-a"))
    result = run_cli("apply", "-f", "-", state_dir=state, input=docs)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("MP2007") == 2 and "warning <stdin>:" in result.stderr
    assert "peerauthentication.security.istio.io/mesh-b created" in result.stdout
    out = ok(run_cli("describe", "pa", "mesh-b", "-n", "istio-system", state_dir=state))
    diagnostics = out[out.index("Diagnostics:"):]
    assert "warning MP2007: 2 mesh-wide PeerAuthentications" in diagnostics
    assert "only the oldest, mesh-a, is enforced" in diagnostics


def test_cli_entry_point_matches_module(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "meshpilot.cli.main", "version"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"meshpilot {meshpilot.__version__}"


def test_a_garbled_endpoints_file_never_hides_a_running_control_plane(
        state_dir: Path) -> None:
    """Issue 18: with endpoints.json overwritten by garbage, the CLI still finds the
    control plane by the lock it holds (its pid is written in it): status and up say so
    instead of "not running", and down stops it."""
    ok(run_cli("up", state_dir=state_dir))
    pid = int(read_endpoints(state_dir)["pid"])
    (state_dir / "endpoints.json").write_text("{not json at all")
    status = run_cli("status", state_dir=state_dir)
    assert status.returncode == 1
    assert f"pid {pid}" in status.stderr and "meshpilot down" in status.stderr
    up = run_cli("up", state_dir=state_dir)
    assert up.returncode == 1 and f"pid {pid}" in up.stderr
    assert pid_alive(pid)  # no second control plane was started, the first still runs
    assert "is down" in ok(run_cli("down", state_dir=state_dir))
    assert _pid_gone(pid)
    assert "not running" in ok(run_cli("down", state_dir=state_dir))
