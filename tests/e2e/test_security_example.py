"""``examples/secure`` does what its comments say: namespace ``secure`` in STRICT mutual
TLS, ``/admin*`` denied to everyone, ``api`` answering ``web`` only, ``web`` read-only;
each workload with its own service account. Real pods calling each other through their
sidecars (the demo app's ``/call``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import run_cli
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given
from tests.e2e.security import DENIED, direct, status, url

EXAMPLES = Path(__file__).parents[2] / "examples"
SECURE = "secure"


def _call(mesh: Mesh, caller: str, target: str) -> dict[str, Any]:
    """What ``caller``'s app got when it called ``target`` through its own sidecar."""
    r = mesh.http.get(url(caller, SECURE, "/call"), params={"url": target})
    assert r.status_code == 200, r.text
    return r.json()


def test_the_secure_example_enforces_what_it_says(mesh: Mesh, given: Given) -> None:
    """Istio's defaults and policies as the example writes them: only web reaches api,
    nobody reaches /admin*, web takes reads only, and nothing outside the mesh gets in."""
    given.applied(*(p.read_text() for p in sorted((EXAMPLES / SECURE).glob("*.yaml"))))
    api, web, reports = (url(app, SECURE) for app in ("api", "web", "reports"))

    # the mesh proxy (namespace default, service account default)
    assert mesh.http.get(web).status_code == 200
    assert mesh.http.get(reports).status_code == 200
    for denied in (mesh.http.get(api), mesh.http.post(web, content=b"x"),
                   mesh.http.get(url("reports", SECURE, "/admin/users"))):
        assert (denied.status_code, denied.text) == (403, DENIED)

    # pod to pod, each with its own identity
    from_web = _call(mesh, "web", api)
    assert from_web["status"] == 200, from_web
    assert from_web["body"]["headers"]["x-meshpilot-peer-principal"] == (
        "spiffe://cluster.local/ns/secure/sa/web")
    assert _call(mesh, "reports", api)["status"] == 403
    assert _call(mesh, "web", url("api", SECURE, "/admin"))["status"] == 403

    # outside the mesh: plaintext is refused at every pod
    for app in ("api", "web", "reports"):
        with direct(mesh, SECURE, app) as client:
            assert status(client, "/") in {"RemoteProtocolError", "ReadError",
                                           "ConnectError"}, app


def test_the_examples_pass_analyze(tmp_path: Path) -> None:
    """``meshpilot analyze -f examples/`` (offline) finds nothing wrong, the secure
    example included."""
    proc = run_cli("analyze", "-f", str(EXAMPLES), state_dir=tmp_path / "state")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout and "warning" not in proc.stdout.lower(), proc.stdout
