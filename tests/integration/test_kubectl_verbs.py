"""The real ``kubectl``'s explain, selectors and subresources against a real control
plane (one per module, ``--no-mesh --tls``; each test in a namespace of its own).

Each case follows what kubectl does against a Kubernetes API server: ``explain``
renders the OpenAPI v3 schema the server publishes, ``-l`` sends a label selector in
Kubernetes' set-based grammar and ``--field-selector`` a field selector, both applied
by the server to lists and watches.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from tests.conftest import ControlPlane, clean_env
from tests.integration.test_kubectl import EXAMPLES, in_namespace, kubectl, plane

__all__ = ["plane"]  # the module's control plane fixture


def test_explain_shows_the_fields_of_meshpilots_models(plane: ControlPlane) -> None:
    route = kubectl(plane, "explain", "virtualservice.spec.http.route").stdout
    assert "KIND:       VirtualService" in route
    assert "FIELD: route <[]HTTPRouteDestination>" in route
    assert "weighted destination of an HTTP route" in route  # the model's docstring
    for field in ("destination\t<Destination> -required-", "weight\t<integer>",
                  "headers\t<Headers>"):
        assert field in route
    # every served kind explains, every field down (by short names too)
    for name in ("vs", "dr", "gw", "se", "we", "sidecar", "pa", "ap", "ra", "svc", "secret",
                 "sa", "cm", "ns", "deploy", "canary", "mt", "alertproviders", "ro"):
        assert "FIELDS:" in kubectl(plane, "explain", name, "--recursive").stdout, name
    missing = kubectl(plane, "explain", "vs.spec.htpp", check=False)
    assert missing.returncode == 1
    assert 'field "htpp" does not exist' in missing.stderr

    # what explain lists is what a write accepts: kubectl apply --validate=strict leaves
    # field validation to the server (the served schema says it takes fieldValidation),
    # which refuses a field explain does not show, naming the ones it does
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
          "metadata": {"name": "strict", "namespace": "explain"},
          "spec": {"hosts": ["strict"], "http": [{"route": [
              {"destination": {"host": "strict"}, "wieght": 100}]}]}}
    refused = kubectl(plane, "apply", "--validate=strict", "-f", "-",
                      input=yaml.safe_dump(vs), check=False)
    assert refused.returncode == 1
    assert ("spec.http[0].route[0].wieght: unknown field 'wieght' (did you mean 'weight'?)"
            in refused.stderr)
    assert "valid fields here: destination, headers, weight (MP0010)" in refused.stderr
    assert kubectl(plane, "get", "vs", "-n", "explain", "-o", "name").stdout == ""

    # the Swagger 2.0 document older clients read describes the same fields
    swagger = json.loads(kubectl(plane, "get", "--raw", "/openapi/v2").stdout)
    schemas = [s for s in swagger["definitions"].values()
               if {"group": "networking.istio.io", "version": "v1",
                   "kind": "VirtualService"} in s.get("x-kubernetes-group-version-kind", [])]
    assert len(schemas) == 1 and "spec" in schemas[0]["properties"]


def labelled(namespace: str, name: str, labels: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "data": {"k": "v"}}


def test_label_and_field_selectors_on_list_and_watch(
        plane: ControlPlane, tmp_path: Path) -> None:
    objects = [labelled("sel", "a", {"app": "web", "tier": "front"}),
               labelled("sel", "b", {"app": "api", "tier": "back"}),
               labelled("sel", "c", {"app": "db"}),
               labelled("sel-2", "a", {"app": "web"})]
    kubectl(plane, "apply", "-f", "-", input=yaml.safe_dump_all(objects))

    def names(*args: str) -> list[str]:
        return kubectl(plane, "get", "cm", *args, "-o",
                       "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} "
                       "{end}").stdout.split()

    assert names("-n", "sel", "-l", "app in (web,api)") == ["sel/a", "sel/b"]
    assert names("-n", "sel", "-l", "app notin (web),!tier") == ["sel/c"]
    assert names("-n", "sel", "-l", "tier!=front") == ["sel/b", "sel/c"]
    assert sorted(names("-A", "-l", "app=web")) == ["sel-2/a", "sel/a"]
    assert names("-A", "--field-selector", "metadata.name=a,metadata.namespace!=sel") == [
        "sel-2/a"]
    bad = kubectl(plane, "get", "cm", "-n", "sel", "-l", "app in web", check=False)
    assert bad.returncode == 1
    assert "unable to parse requirement" in bad.stderr or "label selector" in bad.stderr
    refused = kubectl(plane, "get", "cm", "-A", "--field-selector", "data.k=v", check=False)
    assert "only metadata.name and metadata.namespace" in refused.stderr
    kubectl(plane, "delete", "-f", "-", input=yaml.safe_dump_all(objects))


def test_scale_and_status_subresources(plane: ControlPlane, tmp_path: Path) -> None:
    """kubectl scale patches the autoscaling/v1 Scale at .../scale; the status
    subresource is readable (kubectl get --subresource) and, being what meshpilot
    observes, not writable by a client."""
    app = tmp_path / "app.yaml"
    app.write_text(in_namespace("scale", EXAMPLES / "deployments.yaml"))
    kubectl(plane, "apply", "-f", str(app))
    done = kubectl(plane, "scale", "deployment", "myapp-v2", "-n", "scale", "--replicas=3")
    assert done.stdout.strip() == "deployment.apps/myapp-v2 scaled"
    spec = kubectl(plane, "get", "deploy", "myapp-v2", "-n", "scale", "-o",
                   "jsonpath={.spec.replicas} {.metadata.generation}").stdout
    assert spec == "3 2"
    scale = yaml.safe_load(kubectl(plane, "get", "deploy", "myapp-v2", "-n", "scale",
                                   "--subresource=scale", "-o", "yaml").stdout)
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 3)
    assert scale["status"]["selector"] == "app=myapp,version=v2"
    # the change is the scaler's: a server-side apply of the file's 2 conflicts
    refused = kubectl(plane, "apply", "--server-side", "-f", str(app), check=False)
    assert 'conflict with "kubectl" using apps/v1: .spec.replicas' in refused.stderr

    header = kubectl(plane, "get", "deploy", "myapp-v2", "-n", "scale",
                     "--subresource=status").stdout.split()
    assert header[:5] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    written = kubectl(plane, "patch", "deploy", "myapp-v2", "-n", "scale",
                      "--subresource=status", "--type=merge", "-p",
                      '{"status": {"readyReplicas": 3}}', check=False)
    assert written.returncode == 1
    assert "MethodNotAllowed" in written.stderr
    negative = kubectl(plane, "patch", "deploy", "myapp-v2", "-n", "scale",
                       "--subresource=scale", "--type=merge", "-p",
                       '{"spec": {"replicas": -1}}', check=False)
    assert "spec.replicas must be a whole number, 0 or more" in negative.stderr
    none = kubectl(plane, "scale", "vs", "myapp", "-n", "scale", "--replicas=2", check=False)
    assert none.returncode == 1
    kubectl(plane, "delete", "-f", str(app))


def test_a_watch_takes_a_set_based_label_selector(plane: ControlPlane) -> None:
    """kubectl get -w -l sends the selector on the watch: only matching objects'
    events arrive, as from an API server."""
    env = clean_env(KUBECONFIG=str(plane.state_dir / "kubeconfig"),
                    HOME=str(plane.state_dir.parent / "home"))
    watcher = subprocess.Popen(
        ["kubectl", "get", "cm", "-n", "watch-sel", "-w", "--output-watch-events",
         "--no-headers", "-l", "app in (web,api),!skip", "--request-timeout=20s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert watcher.stdout is not None
        for name, labels in [("db", {"app": "db"}), ("skipped", {"app": "web", "skip": "now"}),
                             ("web", {"app": "web"})]:
            kubectl(plane, "apply", "-f", "-",
                    input=yaml.safe_dump(labelled("watch-sel", name, labels)))
        first = watcher.stdout.readline().split()
        assert first[:2] == ["ADDED", "web"], first
        kubectl(plane, "delete", "cm", "db", "skipped", "web", "-n", "watch-sel")
        assert watcher.stdout.readline().split()[:2] == ["DELETED", "web"]
    finally:
        watcher.kill()
        watcher.communicate(timeout=10)


def test_a_delete_that_would_orphan_is_refused(plane: ControlPlane) -> None:
    """kubectl delete --cascade=orphan asks the API server to leave the dependents (a
    Deployment's pods) running; meshpilot's pods stop with their Deployment, so it
    refuses and deletes nothing rather than deleting differently."""
    kubectl(plane, "apply", "-f", "-", input=yaml.safe_dump(labelled("orphan", "c", {})))
    refused = kubectl(plane, "delete", "cm", "c", "-n", "orphan", "--cascade=orphan",
                      check=False)
    assert refused.returncode == 1
    assert "propagationPolicy Orphan (--cascade=orphan) is not supported" in refused.stderr
    assert kubectl(plane, "get", "cm", "-n", "orphan", "-o", "name").stdout.split() == [
        "configmap/c"]
    kubectl(plane, "delete", "cm", "c", "-n", "orphan", "--cascade=foreground")
    assert kubectl(plane, "get", "cm", "-n", "orphan", "-o", "name").stdout == ""
