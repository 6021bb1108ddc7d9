"""Given a ConfigMap and a Secret, when a pod reads them by environment and by file, then
its app sees their values; a changed ConfigMap rolls the pod to the new value; a missing
one keeps the pod waiting (CreateContainerConfigError) until it is applied."""

from __future__ import annotations

from typing import Any

from tests.builders import deployment, service
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Given, When

# Serves what the app was given, as JSON. It finds mounted files where the runtime says
# they are: MESHPILOT_POD_ROOT + mountPath (in Kubernetes the variable is unset).
APP = """
import http.server, json, os
root = os.environ.get("MESHPILOT_POD_ROOT", "")
def read(path):
    try:
        with open(root + path) as f:
            return f.read()
    except OSError as exc:
        return "error: %s" % exc.strerror
def mode(path):
    try:
        return oct(os.stat(root + path).st_mode & 0o777)
    except OSError:
        return None
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "greeting": os.environ.get("GREETING"), "color": os.environ.get("CFG_color"),
            "token": os.environ.get("TOKEN"), "file": read("/etc/app/greeting"),
            "sub": read("/etc/color.txt"), "secret": read("/etc/secret/token"),
            "secret_mode": mode("/etc/secret/token"),
            "scratch": os.path.isdir(root + "/scratch"),
            "pod": os.environ.get("POD_NAME")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer((os.environ["POD_IP"], int(os.environ["PORT"])), H).serve_forever()
"""

URL = "http://cfg:8080/"


def config_map(greeting: str, color: str = "blue") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
            "data": {"greeting": greeting, "color": color}}


SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
          "stringData": {"token": "tok-123"}}


def app_deployment() -> dict[str, Any]:
    container = {
        "name": "app", "command": ["python", "-c", APP],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                                   "key": "greeting"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        ],
        "volumeMounts": [
            {"name": "settings", "mountPath": "/etc/app", "readOnly": True},
            {"name": "settings", "mountPath": "/etc/color.txt", "subPath": "color"},
            {"name": "creds", "mountPath": "/etc/secret", "readOnly": True},
            {"name": "scratch", "mountPath": "/scratch"},
        ],
    }
    volumes = [{"name": "settings", "configMap": {"name": "settings"}},
               {"name": "creds", "secret": {"secretName": "creds"}},
               {"name": "scratch", "emptyDir": {}}]
    return deployment("cfg", labels={"app": "cfg"}, containers=[container],
                      pod_spec={"volumes": volumes})


def answer(mesh: Mesh) -> dict[str, Any]:
    r = mesh.http.get(URL)
    assert r.status_code == 200, r.text
    return r.json()


def test_pod_reads_configmap_and_secret_and_rolls_when_the_configmap_changes(
        mesh: Mesh, given: Given, when: When) -> None:
    given.applied(config_map("hello"), SECRET, app_deployment(), service("cfg", port=8080))

    first = answer(mesh)
    assert first["greeting"] == "hello" and first["color"] == "blue"
    assert first["token"] == "tok-123"
    assert first["file"] == "hello" and first["sub"] == "blue"
    assert first["secret"] == "tok-123" and first["secret_mode"] == "0o600"
    assert first["scratch"] is True

    when.apply_nowait(config_map("bonjour", color="green"))
    rolled = when.until(lambda: (a := answer(mesh))["greeting"] == "bonjour" and a, 60,
                        "the pod rolled to the new ConfigMap")
    assert rolled["pod"] != first["pod"]
    assert rolled["file"] == "bonjour" and rolled["sub"] == "green"
    assert rolled["color"] == "green"
    when.converges()
    assert [p["metadata"]["name"] for p in mesh.pods_of("cfg", terminating=False)] \
        == [rolled["pod"]]


def test_a_missing_configmap_keeps_the_pod_waiting_until_it_is_applied(
        mesh: Mesh, when: When) -> None:
    body = mesh.apply(SECRET, app_deployment(), service("cfg", port=8080))
    assert "MP2019" in {d["code"] for d in body["diagnostics"]}

    def waiting() -> dict[str, Any] | None:
        pods = mesh.pods_of("cfg")
        status = pods[0]["status"] if pods else {}
        return status if status.get("reason") == "CreateContainerConfigError" else None

    status = when.until(waiting, 30, "the pod waits for its ConfigMap")
    assert status["phase"] == "Pending" and not status["ready"]
    assert "configmap 'settings' not found" in status["message"]
    assert "tok-123" not in str(mesh.pods())  # no Secret value in what the API shows

    when.apply(config_map("late"))
    assert answer(mesh)["greeting"] == "late"
