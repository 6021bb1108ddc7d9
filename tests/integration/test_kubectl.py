"""The real ``kubectl`` against a real control plane, through the kubeconfig it writes.

One config-plane-only control plane (``--no-mesh --tls``: kubectl sends its bearer token
over HTTPS only) serves the whole module; each test works in a namespace of its own.
A missing kubectl fails these tests: they are the proof that kubectl works.
"""

from __future__ import annotations

import os
import shutil
import ssl
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.builders import PODINFO_HPA
from tests.conftest import ControlPlane, clean_env, read_endpoints

KUBECTL = "kubectl"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("kubectl") / "state", ["--no-mesh", "--tls"])
    try:
        cp.start()
        # the fixture's own client, to look behind kubectl's back, verifies the API too
        assert cp.client is not None
        cp.client.close()
        cp.client = cp.new_client(verify=ssl.create_default_context(
            cafile=str(cp.state_dir / "api-ca.pem")))
        yield cp
    finally:
        cp.stop()


def kubectl(plane: ControlPlane, *args: str, check: bool = True,
            input: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run the real kubectl with the control plane's kubeconfig, and a discovery cache of
    its own (``HOME``) so no other run's cache is read."""
    binary = shutil.which(KUBECTL)
    assert binary, "kubectl is not on PATH: these tests need the real kubectl binary"
    home = plane.state_dir.parent / "home"
    home.mkdir(exist_ok=True)
    env = clean_env(KUBECONFIG=str(plane.state_dir / "kubeconfig"), HOME=str(home))
    done = subprocess.run([binary, *args], capture_output=True, text=True, env=env,
                          input=input, timeout=timeout)
    if check:
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}{done.stdout}"
    return done


# --- kubeconfig and discovery ---------------------------------------------------------

def test_the_kubeconfig_names_the_api_its_token_and_context(plane: ControlPlane) -> None:
    path = plane.state_dir / "kubeconfig"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == "meshpilot"
    assert config["clusters"][0]["cluster"]["server"] == plane.api
    assert config["clusters"][0]["cluster"]["certificate-authority"] == str(
        plane.state_dir / "api-ca.pem")
    assert config["users"][0]["user"]["token"] == plane.token
    assert "Server Version: v1.32" in kubectl(plane, "version").stdout


def test_a_wrong_token_is_refused(plane: ControlPlane, tmp_path: Path) -> None:
    config = yaml.safe_load((plane.state_dir / "kubeconfig").read_text())
    config["users"][0]["user"]["token"] = "not-the-token"
    wrong = tmp_path / "kubeconfig"
    wrong.write_text(yaml.safe_dump(config))
    env = clean_env(KUBECONFIG=str(wrong), HOME=str(tmp_path))
    done = subprocess.run([KUBECTL, "get", "--raw", "/version"], capture_output=True,
                          text=True, env=env, timeout=30)
    assert done.returncode != 0
    assert "You must be logged in" in done.stderr
    assert "missing or wrong bearer token" in done.stderr


def test_api_resources_lists_short_names_and_categories(plane: ControlPlane) -> None:
    rows = {line.split()[0]: line.split() for line in
            kubectl(plane, "api-resources", "--no-headers").stdout.splitlines()}
    for plural, short in [("virtualservices", "vs"), ("destinationrules", "dr"),
                          ("gateways", "gw"), ("serviceentries", "se"),
                          ("peerauthentications", "pa"), ("authorizationpolicies", "ap"),
                          ("requestauthentications", "ra"), ("canaries", "canary"),
                          ("deployments", "deploy"), ("services", "svc")]:
        assert rows[plural][1] == short, rows[plural]
    istio = kubectl(plane, "api-resources", "--categories=istio-io", "-o", "name").stdout
    assert "virtualservices.networking.istio.io" in istio.split()
    assert "peerauthentications.security.istio.io" in istio.split()


# --- apply, get, delete -----------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "canary"


def in_namespace(namespace: str, *files: Path) -> str:
    """The documents of ``files`` moved to ``namespace``, as one YAML stream."""
    docs = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    for d in docs:
        d["metadata"]["namespace"] = namespace
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def weights(plane: ControlPlane, namespace: str) -> str:
    return kubectl(plane, "get", "virtualservice", "myapp", "-n", namespace, "-o",
                   "jsonpath={.spec.http[0].route[*].weight}").stdout


def test_apply_creates_then_leaves_unchanged_then_configures(
        plane: ControlPlane, tmp_path: Path) -> None:
    app = tmp_path / "app.yaml"
    app.write_text(in_namespace("apply", *sorted(EXAMPLES.glob("*.yaml"))))
    first = kubectl(plane, "apply", "-f", str(app)).stdout.splitlines()
    assert first == ["deployment.apps/myapp-v1 created", "deployment.apps/myapp-v2 created",
                     "service/myapp created", "destinationrule.networking.istio.io/myapp created",
                     "virtualservice.networking.istio.io/myapp created"]
    again = kubectl(plane, "apply", "-f", str(app)).stdout.splitlines()
    assert again == [line.replace("created", "unchanged") for line in first]
    assert weights(plane, "apply") == "90 10"
    assert kubectl(plane, "get", "deploy", "-n", "apply", "-l", "version=v2",
                   "-o", "name").stdout.split() == ["deployment.apps/myapp-v2"]

    # a merge patch for the Istio kind, a strategic merge patch for the Deployment
    docs = list(yaml.safe_load_all(app.read_text()))
    docs[1]["spec"]["template"]["spec"]["containers"][0]["args"] += ["--fail-rate", "0"]
    for route, weight in zip(docs[4]["spec"]["http"][0]["route"], (50, 50), strict=True):
        route["weight"] = weight
    app.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    edited = kubectl(plane, "apply", "-f", str(app)).stdout.splitlines()
    assert "virtualservice.networking.istio.io/myapp configured" in edited
    assert "deployment.apps/myapp-v2 configured" in edited
    assert "deployment.apps/myapp-v1 unchanged" in edited
    assert weights(plane, "apply") == "50 50"
    deployment = plane.client.get("/apis/apps/v1/namespaces/apply/deployments/myapp-v2").json()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--version", "v2", "--fail-rate", "0"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert deployment["metadata"]["generation"] == 2

    kubectl(plane, "delete", "-f", str(app))
    assert kubectl(plane, "get", "all", "-n", "apply", "-o", "name").stdout == ""


def test_get_across_namespaces_by_short_names_and_jsonpath(
        plane: ControlPlane, tmp_path: Path) -> None:
    for namespace in ("get-a", "get-b"):
        app = tmp_path / f"{namespace}.yaml"
        app.write_text(in_namespace(namespace, EXAMPLES / "service.yaml",
                                    EXAMPLES / "virtualservice.yaml"))
        kubectl(plane, "apply", "-f", str(app))
    rows = kubectl(plane, "get", "vs,dr", "-A", "--no-headers").stdout.splitlines()
    assert [r.split()[:2] for r in rows if r.startswith("get-")] == [
        ["get-a", "virtualservice.networking.istio.io/myapp"],
        ["get-b", "virtualservice.networking.istio.io/myapp"],
        ["get-a", "destinationrule.networking.istio.io/myapp"],
        ["get-b", "destinationrule.networking.istio.io/myapp"]]
    assert weights(plane, "get-b") == "90 10"
    as_json = kubectl(plane, "get", "vs", "myapp", "-n", "get-a", "-o", "json").stdout
    assert '"kind": "VirtualService"' in as_json
    again = kubectl(plane, "create", "-f", str(tmp_path / "get-a.yaml"), check=False)
    assert "(AlreadyExists)" in again.stderr
    missing = kubectl(plane, "get", "vs", "nothere", "-n", "get-a", check=False)
    assert missing.returncode == 1
    assert "NotFound" in missing.stderr
    kubectl(plane, "delete", "vs", "myapp", "-n", "get-a")
    assert kubectl(plane, "get", "vs", "-n", "get-a", "-o", "name").stdout == ""


def test_a_bad_file_is_refused_with_its_field_and_changes_nothing(
        plane: ControlPlane, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(in_namespace("bad", EXAMPLES / "service.yaml",
                                 EXAMPLES / "virtualservice.yaml"))
    kubectl(plane, "apply", "-f", str(good))
    before = plane.client.get(
        "/apis/networking.istio.io/v1/namespaces/bad/virtualservices/myapp").json()

    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("weight: 10", "wieght: 10"))
    refused = kubectl(plane, "apply", "-f", str(bad), check=False)
    assert refused.returncode == 1
    assert ('The VirtualService "myapp" is invalid: spec.http[0].route[1].wieght: '
            "unknown field 'wieght' (did you mean 'weight'?)") in refused.stderr
    assert "valid fields here: destination, headers, weight (MP0010)" in refused.stderr
    # --validate=false asks an API server to drop the field; meshpilot still refuses it
    lenient = kubectl(plane, "apply", "--validate=false", "-f", str(bad), check=False)
    assert lenient.returncode == 1
    assert "unknown field 'wieght'" in lenient.stderr
    assert "refuses unknown fields whatever --validate asks" in lenient.stderr
    after = plane.client.get(
        "/apis/networking.istio.io/v1/namespaces/bad/virtualservices/myapp").json()
    assert after == before

    # a new object that does not validate is not created either
    bad.write_text(bad.read_text().replace("name: myapp\n  namespace: bad\nspec:\n  hosts",
                                           "name: other\n  namespace: bad\nspec:\n  hosts"))
    assert "name: other" in bad.read_text()
    refused = kubectl(plane, "apply", "-f", str(bad), check=False)
    assert 'The VirtualService "other" is invalid' in refused.stderr
    assert kubectl(plane, "get", "vs", "-n", "bad", "-o", "name").stdout.split() == [
        "virtualservice.networking.istio.io/myapp"]


def test_get_prints_the_columns_users_know(plane: ControlPlane, tmp_path: Path) -> None:
    progressive = EXAMPLES.parent / "progressive"
    app = tmp_path / "app.yaml"
    # kubectl applies one object at a time, so what the VirtualService names (the
    # DestinationRule's subsets, in service.yaml) comes first
    app.write_text(in_namespace("columns", EXAMPLES / "service.yaml",
                                EXAMPLES / "virtualservice.yaml",
                                *sorted(progressive.glob("*.yaml"))))
    kubectl(plane, "apply", "-f", str(app))

    def header(*args: str) -> list[str]:
        return kubectl(plane, "get", *args, "-n", "columns").stdout.splitlines()[0].split()

    assert header("vs") == ["NAME", "GATEWAYS", "HOSTS", "AGE"]
    assert header("canary") == ["NAME", "STATUS", "WEIGHT", "LASTTRANSITIONTIME"]
    assert header("deploy") == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert header("dr") == ["NAME", "HOST", "AGE"]
    assert header("svc") == ["NAME", "PORT(S)", "AGE"]
    vs_row = kubectl(plane, "get", "vs", "myapp", "-n", "columns", "--no-headers").stdout
    assert vs_row.split()[:2] == ["myapp", '["myapp"]']
    # -o wide adds the lower-priority columns
    assert "FAILEDCHECKS" in header("canary", "-o", "wide")
    kubectl(plane, "delete", "-f", str(app))




def test_flaggers_podinfo_autoscaler_applies_unchanged(plane: ControlPlane,
                                                       tmp_path: Path) -> None:
    """kubectl apply of Flagger's podinfo HPA, then kubectl get hpa with its columns and
    a strategic merge patch on a second apply."""
    hpa = tmp_path / "hpa.yaml"
    hpa.write_text(PODINFO_HPA)
    created = kubectl(plane, "apply", "-n", "hpa", "-f", str(hpa))
    assert created.stdout.strip() == "horizontalpodautoscaler.autoscaling/podinfo created"
    assert "MP2047" in created.stderr  # no Deployment podinfo to scale yet: a warning
    lines = kubectl(plane, "get", "hpa", "-n", "hpa").stdout.splitlines()
    assert lines[0].split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS",
                                "REPLICAS", "AGE"]
    assert lines[1].split()[:4] == ["podinfo", "Deployment/podinfo", "cpu:", "<unknown>/99%"]
    hpa.write_text(PODINFO_HPA.replace("maxReplicas: 4", "maxReplicas: 6"))
    kubectl(plane, "apply", "-n", "hpa", "-f", str(hpa))
    assert kubectl(plane, "get", "hpa", "podinfo", "-n", "hpa", "-o",
                   "jsonpath={.spec.maxReplicas}").stdout == "6"
    kubectl(plane, "delete", "-n", "hpa", "-f", str(hpa))
    assert kubectl(plane, "get", "hpa", "-n", "hpa", "-o", "name").stdout == ""


def test_get_watch_streams_one_objects_changes(plane: ControlPlane, tmp_path: Path) -> None:
    app = tmp_path / "app.yaml"
    app.write_text(in_namespace("watch", EXAMPLES / "service.yaml",
                                EXAMPLES / "virtualservice.yaml"))
    kubectl(plane, "apply", "-f", str(app))
    home = plane.state_dir.parent / "home"
    env = clean_env(KUBECONFIG=str(plane.state_dir / "kubeconfig"), HOME=str(home))
    watcher = subprocess.Popen(
        [KUBECTL, "get", "vs", "myapp", "-n", "watch", "-w", "--output-watch-events",
         "--no-headers", "--request-timeout=20s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert watcher.stdout is not None
        first = watcher.stdout.readline().split()
        assert first[:2] == ["ADDED", "myapp"], first
        # another object of the same kind and namespace is not the watched one
        other = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                 "metadata": {"name": "other", "namespace": "watch"},
                 "spec": {"hosts": ["other"],
                          "http": [{"route": [{"destination": {"host": "myapp"}}]}]}}
        kubectl(plane, "apply", "-f", "-", input=yaml.safe_dump(other))
        app.write_text(app.read_text().replace("weight: 90", "weight: 80")
                       .replace("weight: 10", "weight: 20"))
        kubectl(plane, "apply", "-f", str(app))
        assert watcher.stdout.readline().split()[:2] == ["MODIFIED", "myapp"]
        kubectl(plane, "delete", "vs", "myapp", "-n", "watch")
        assert watcher.stdout.readline().split()[:2] == ["DELETED", "myapp"]
    finally:
        watcher.kill()
        watcher.communicate(timeout=10)


def test_typed_commands_sending_protobuf(plane: ControlPlane) -> None:
    """kubectl's typed create commands send Kubernetes protobuf: the Namespace,
    ConfigMap, Secret and ServiceAccount they build are read; any other kind is refused
    with 415 and a way that works, never half-read."""
    assert kubectl(plane, "create", "namespace", "team-a").stdout.strip() == (
        "namespace/team-a created")
    kubectl(plane, "create", "configmap", "settings", "-n", "team-a",
            "--from-literal=mode=fast", "--from-literal=level=3")
    assert kubectl(plane, "get", "cm", "settings", "-n", "team-a", "-o",
                   "jsonpath={.data.level} {.data.mode}").stdout == "3 fast"
    kubectl(plane, "create", "secret", "generic", "creds", "-n", "team-a",
            "--from-literal=password=hunter2")
    assert kubectl(plane, "get", "secret", "creds", "-n", "team-a", "-o",
                   "jsonpath={.data.password}").stdout == "aHVudGVyMg=="
    kubectl(plane, "create", "serviceaccount", "robot", "-n", "team-a")
    kubectl(plane, "label", "namespace", "team-a", "tier=gold")
    assert kubectl(plane, "get", "ns", "-l", "tier=gold", "-o", "name").stdout.split() == [
        "namespace/team-a"]
    refused = kubectl(plane, "create", "deployment", "web", "-n", "team-a",
                      "--image=nginx", check=False)
    assert refused.returncode == 1
    assert "UnsupportedMediaType" in refused.stderr or "JSON only" in refused.stderr
    assert "kubectl apply -f" in refused.stderr
    assert kubectl(plane, "get", "deploy", "-n", "team-a", "-o", "name").stdout == ""


def test_kubectl_works_beside_a_plain_http_api(tmp_path: Path) -> None:
    """kubectl sends a kubeconfig's token over HTTPS only, so beside a plain-HTTP API
    (plain ``meshpilot up``, as issue 14's commands start it) the same API is also served
    over HTTPS on a loopback port of its own, and the kubeconfig names that one. A stale
    kubeconfig from an earlier start is replaced."""
    state_dir = tmp_path / "plain"
    state_dir.mkdir(mode=0o700)
    (state_dir / "kubeconfig").write_text("stale")
    cp = ControlPlane(state_dir, ["--no-mesh"])
    try:
        cp.start()
        endpoints = read_endpoints(state_dir) or {}
        assert endpoints["api"].startswith("http://")
        assert endpoints["kube_api"].startswith("https://127.0.0.1:")
        config = yaml.safe_load((state_dir / "kubeconfig").read_text())
        assert config["clusters"][0]["cluster"]["server"] == endpoints["kube_api"]
        assert stat.S_IMODE((state_dir / "kubeconfig").stat().st_mode) == 0o600
        vs = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
              "metadata: {name: reviews, namespace: default}\n"
              "spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}\n")
        created = kubectl(cp, "apply", "-f", "-", input=vs)
        assert "virtualservice.networking.istio.io/reviews created" in created.stdout
        assert "reviews" in kubectl(cp, "get", "vs", "-A").stdout
        # the same store, read over the plain-HTTP API
        stored = cp.client.get("/apis/networking.istio.io/v1/namespaces/default/"
                               "virtualservices/reviews")
        assert stored.status_code == 200
    finally:
        cp.stop()
