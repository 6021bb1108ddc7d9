"""Envoy access logs as Istio users read them (``kubectl logs POD -c istio-proxy``): one
line per request in Istio's default TEXT format, on the client's sidecar and on the
server's, read through the pod log API and through the real ``meshpilot logs`` CLI.

The scene: ``myapp`` v1 (one pod) with subsets v1 and v2 (v2 has no pod), a VirtualService
sending ``/app`` to v1 and ``/v2`` to v2 (nothing else: any other path has no route), an
AuthorizationPolicy denying ``/app/admin`` at myapp's sidecar, and a ``sleep`` pod whose
sidecar every request leaves through. Each request carries its own ``x-request-id``, so
its line is found in both sidecars' logs.
"""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import httpx

from tests.conftest import run_cli, wait_for
from tests.e2e import myapp
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given
from tests.e2e.security import applied, as_pod, authorization_policy, pod, workload

HOST = "myapp.default.svc.cluster.local"
V1 = f"outbound|8080|v1|{HOST}"
V2 = f"outbound|8080|v2|{HOST}"
ROUTES = """
- match: [{uri: {prefix: /app}}]
  route: [{destination: {host: myapp, subset: v1}}]
- match: [{uri: {prefix: /v2}}]
  route: [{destination: {host: myapp, subset: v2}}]
"""
DENY_ADMIN = authorization_policy("deny-admin", "default", """
selector: {matchLabels: {app: myapp}}
action: DENY
rules: [{to: [{operation: {paths: [/app/admin]}}]}]
""")


def proxy_log(mesh: Mesh, pod_name: str) -> str:
    r = mesh.api.get(f"/api/v1/namespaces/default/pods/{pod_name}/log",
                     params={"container": "istio-proxy"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


def line_of(mesh: Mesh, pod_name: str, request_id: str) -> str:
    """The access log line of the request ``request_id`` in ``pod_name``'s sidecar log
    (Envoy writes it to the file within a second)."""
    def found() -> str | None:
        return next((line for line in proxy_log(mesh, pod_name).splitlines()
                     if f'"{request_id}"' in line), None)
    return wait_for(found, 10, interval=0.2, message=f"the line of request {request_id}")


def fields(line: str) -> dict[str, str]:
    """The fields of an Istio TEXT format line that these tests read."""
    start, rest = line.split("] ", 1)
    request, rest = rest[1:].split('" ', 1)
    code, flags, details, *_ = rest.split(" ")
    tail = line.split('" ')[-1].split(" ")  # after "%UPSTREAM_HOST%"
    return {"start": start[1:], "request": request, "code": code, "flags": flags,
            "details": details, "cluster": tail[0], "route": tail[-1]}


def test_requests_leave_lines_in_both_sidecars_logs(
        mesh: Mesh, given: Given) -> None:
    given.applied(myapp.version("v1"), myapp.service(), myapp.subsets("v1", "v2"),
                  myapp.routes(ROUTES), *workload("sleep", "default"))
    applied(mesh, DENY_ADMIN)
    client_pod = pod(mesh, "default", "sleep")["metadata"]["name"]
    server_pod = pod(mesh, "default", "myapp")["metadata"]["name"]
    asked = {}
    with as_pod(mesh, "default", "sleep") as sleep:
        for name, path, expected in (("ok", "/app/hello", 200), ("no-route", "/nowhere", 404),
                                     ("no-endpoint", "/v2/x", 503),
                                     ("denied", "/app/admin", 403)):
            rid = f"{name}-{uuid.uuid4()}"
            r = sleep.get(f"http://myapp:8080{path}", headers={"x-request-id": rid})
            assert r.status_code == expected, (name, r.status_code, r.text)
            asked[name] = rid

    ok = fields(line_of(mesh, client_pod, asked["ok"]))
    assert ok["request"] == "GET /app/hello HTTP/1.1"
    assert (ok["code"], ok["flags"], ok["details"]) == ("200", "-", "via_upstream")
    assert ok["cluster"] == V1
    served = fields(line_of(mesh, server_pod, asked["ok"]))
    assert (served["code"], served["flags"], served["cluster"]) == ("200", "-", "inbound|8080||")

    no_route = fields(line_of(mesh, client_pod, asked["no-route"]))
    assert (no_route["code"], no_route["flags"]) == ("404", "NR")
    assert no_route["details"] == "route_not_found"

    no_endpoint = fields(line_of(mesh, client_pod, asked["no-endpoint"]))
    assert no_endpoint["code"] == "503" and no_endpoint["flags"] in ("UH", "UF")
    assert no_endpoint["cluster"] == V2

    denied = fields(line_of(mesh, server_pod, asked["denied"]))
    assert (denied["code"], denied["flags"]) == ("403", "-")
    assert denied["details"].startswith("rbac_access_denied_matched_policy"), denied
    assert fields(line_of(mesh, client_pod, asked["denied"]))["details"] == "via_upstream"

    # the files: owner-only, next to the sidecar's bootstrap
    sidecars = mesh.cp.state_dir / "run" / "sidecars"
    for name in (client_pod, server_pod):
        assert stat.S_IMODE((sidecars / f"{name}.access.log").stat().st_mode) == 0o600
        assert (sidecars / f"{name}.json").exists()

    # through the real CLI, Kubernetes' words and the short form alike
    for args in (("-c", "istio-proxy"), ("--proxy",)):
        done = run_cli("logs", client_pod, *args, state_dir=mesh.cp.state_dir)
        assert done.returncode == 0, done.stderr
        assert asked["ok"] in done.stdout and asked["no-route"] in done.stdout
        assert V1 in done.stdout
    tail = run_cli("logs", server_pod, "--proxy", "--tail", "1", state_dir=mesh.cp.state_dir)
    assert tail.returncode == 0, tail.stderr
    assert len(tail.stdout.splitlines()) == 1 and asked["denied"] in tail.stdout
    missing = run_cli("logs", "no-such-pod", "--proxy", state_dir=mesh.cp.state_dir)
    assert missing.returncode == 1 and "no pod 'no-such-pod'" in missing.stderr


def printed(mesh: Mesh, proxy: str, request_id: str) -> dict[str, str]:
    """The fields of the line of ``request_id`` that ``meshpilot logs <proxy>`` prints."""
    def found() -> str | None:
        done = run_cli("logs", proxy, state_dir=mesh.cp.state_dir)
        assert done.returncode == 0, done.stderr
        return next((line for line in done.stdout.splitlines() if request_id in line), None)
    return fields(wait_for(found, 10, interval=0.3, message=f"the line in {proxy}'s log"))


def test_the_built_in_proxies_log_and_the_cli_reads_them(mesh: Mesh, given: Given) -> None:
    given.applied(myapp.version("v1"), myapp.service(), myapp.subsets("v1"),
                  *myapp.ingress("v1"))
    rid = f"mesh-{uuid.uuid4()}"
    assert mesh.http.get("http://myapp:8080/", headers={"x-request-id": rid}).status_code == 200
    line = printed(mesh, "mesh-proxy", rid)
    assert (line["code"], line["flags"]) == ("200", "-")
    assert line["cluster"] == f"outbound|8080||{HOST}"
    path = Path(mesh.cp.state_dir) / "run" / "mesh-proxy.access.log"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    assert mesh.from_ingress("/ingress-path").status_code == 200
    with httpx.Client(trust_env=False, timeout=5.0) as outside:
        assert outside.get(mesh.ingress + "/ingress-path",
                           headers={"x-request-id": "edge-1"}).status_code == 200
    line = printed(mesh, "ingressgateway", "/ingress-path")
    assert (line["code"], line["cluster"]) == ("200", V1)


def test_follow_streams_new_lines(mesh: Mesh, given: Given) -> None:
    """``follow=true`` keeps the answer open and sends each new line as it is written."""
    given.applied(myapp.version("v1"), myapp.service())
    with mesh.api.stream("GET", "/apis/meshpilot.io/v1/proxies/mesh-proxy/log",
                         params={"follow": "true", "tailLines": "0"}, timeout=20) as r:
        assert r.status_code == 200
        rid = f"follow-{uuid.uuid4()}"
        assert mesh.http.get("http://myapp:8080/",
                             headers={"x-request-id": rid}).status_code == 200
        seen = ""
        for chunk in r.iter_text():
            seen += chunk
            if rid in seen:
                break
    assert f'"{rid}"' in seen
