"""The real ``kubectl``'s server-side apply and server dry runs against a real control
plane (one per module, ``--no-mesh --tls``; each test in a namespace of its own).

Each case follows what kubectl does against a Kubernetes API server: ``apply
--server-side`` records the applier in managedFields and refuses to change another
manager's field without ``--force-conflicts`` (server-side apply's conflict rules); the
first server-side apply after a client-side one takes over the fields the
last-applied annotation holds (the API server's last-applied upgrade); and
``--dry-run=server`` / ``kubectl diff`` validate in full and store nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from tests.conftest import ControlPlane
from tests.integration.test_kubectl import EXAMPLES, in_namespace, kubectl, plane, weights

__all__ = ["plane"]  # the module's control plane fixture


def app_file(tmp_path: Path, namespace: str) -> Path:
    app = tmp_path / f"{namespace}.yaml"
    app.write_text(in_namespace(namespace, EXAMPLES / "service.yaml",
                                EXAMPLES / "virtualservice.yaml"))
    return app


def reweighted(app: Path, first: int, second: int) -> Path:
    out = app.with_name(f"{app.stem}-{first}-{second}.yaml")
    out.write_text(app.read_text().replace("weight: 90", f"weight: {first}")
                   .replace("weight: 10", f"weight: {second}"))
    return out


def managers(plane: ControlPlane, namespace: str) -> dict[str, str]:
    body = json.loads(kubectl(plane, "get", "vs", "myapp", "-n", namespace, "-o", "json",
                              "--show-managed-fields").stdout)
    return {e["manager"]: e["operation"] for e in body["metadata"]["managedFields"]}


def test_server_side_apply_records_managers_and_refuses_their_conflicts(
        plane: ControlPlane, tmp_path: Path) -> None:
    app = app_file(tmp_path, "ssa")
    out = kubectl(plane, "apply", "--server-side", "-f", str(app)).stdout.splitlines()
    assert "virtualservice.networking.istio.io/myapp serverside-applied" in out
    assert managers(plane, "ssa") == {"kubectl": "Apply"}

    # another manager changing the weights kubectl set is a conflict; nothing changes
    refused = kubectl(plane, "apply", "--server-side", "--field-manager=ops", "-f",
                      str(reweighted(app, 50, 50)), check=False)
    assert refused.returncode == 1
    assert ('Apply failed with 1 conflict: conflict with "kubectl" using '
            "networking.istio.io/v1: .spec.http") in refused.stderr
    assert "--force-conflicts" in refused.stderr  # kubectl's own advice follows
    assert weights(plane, "ssa") == "90 10"

    forced = kubectl(plane, "apply", "--server-side", "--field-manager=ops",
                     "--force-conflicts", "-f", str(reweighted(app, 50, 50)))
    assert "virtualservice.networking.istio.io/myapp serverside-applied" in forced.stdout
    assert weights(plane, "ssa") == "50 50"
    assert managers(plane, "ssa") == {"kubectl": "Apply", "ops": "Apply"}
    # kubectl, no longer owner of the routes, now conflicts with ops
    back = kubectl(plane, "apply", "--server-side", "-f", str(app), check=False)
    assert 'conflict with "ops"' in back.stderr
    kubectl(plane, "delete", "-f", str(app))


def test_a_second_manager_applying_the_same_values_shares_them(
        plane: ControlPlane, tmp_path: Path) -> None:
    """Server-side apply's shared ownership: the same values applied by another manager
    are no conflict, and that manager is recorded although no field changed (so a later
    change by either conflicts with the other)."""
    app = app_file(tmp_path, "shared")
    kubectl(plane, "apply", "--server-side", "-f", str(app))
    before = kubectl(plane, "get", "vs", "myapp", "-n", "shared", "-o",
                     "jsonpath={.metadata.generation}").stdout
    kubectl(plane, "apply", "--server-side", "--field-manager=ops", "-f", str(app))
    assert managers(plane, "shared") == {"kubectl": "Apply", "ops": "Apply"}
    assert kubectl(plane, "get", "vs", "myapp", "-n", "shared", "-o",
                   "jsonpath={.metadata.generation}").stdout == before
    refused = kubectl(plane, "apply", "--server-side", "-f", str(reweighted(app, 50, 50)),
                      check=False)
    assert 'conflict with "ops"' in refused.stderr
    assert weights(plane, "shared") == "90 10"
    kubectl(plane, "delete", "-f", str(app))


def test_server_side_apply_after_client_side_apply_and_a_patch(
        plane: ControlPlane, tmp_path: Path) -> None:
    app = app_file(tmp_path, "csa")
    kubectl(plane, "apply", "-f", str(app))
    assert managers(plane, "csa") == {"kubectl-client-side-apply": "Update"}
    # the first server-side apply takes over what kubectl apply set: no conflict
    kubectl(plane, "apply", "--server-side", "-f", str(reweighted(app, 80, 20)))
    assert weights(plane, "csa") == "80 20"
    # a merge patch (an Update by kubectl-patch) takes the routes from the applier
    kubectl(plane, "patch", "vs", "myapp", "-n", "csa", "--type=merge", "-p",
            json.dumps({"spec": {"http": [{"route": [
                {"destination": {"host": "myapp", "subset": "v1"}, "weight": 70},
                {"destination": {"host": "myapp", "subset": "v2"}, "weight": 30}]}]}}))
    assert managers(plane, "csa")["kubectl-patch"] == "Update"
    refused = kubectl(plane, "apply", "--server-side", "-f", str(reweighted(app, 60, 40)),
                      check=False)
    assert 'conflict with "kubectl-patch"' in refused.stderr
    assert weights(plane, "csa") == "70 30"
    kubectl(plane, "delete", "-f", str(app))


def test_server_dry_runs_validate_and_store_nothing(
        plane: ControlPlane, tmp_path: Path) -> None:
    app = app_file(tmp_path, "dry")
    # (each object is judged against the stored state, where the VirtualService's
    # subsets do not exist yet: the dry runs of a new app take its Service and rule)
    service = tmp_path / "service.yaml"
    service.write_text(in_namespace("dry", EXAMPLES / "service.yaml"))
    created = kubectl(plane, "create", "--dry-run=server", "-f", str(service), "-o", "name")
    assert created.stdout.split() == ["service/myapp",
                                      "destinationrule.networking.istio.io/myapp"]
    assert kubectl(plane, "get", "svc,dr", "-n", "dry", "-o", "name").stdout == ""
    ssa = kubectl(plane, "apply", "--server-side", "--dry-run=server", "-f", str(service))
    assert "service/myapp serverside-applied (server dry run)" in ssa.stdout
    assert kubectl(plane, "get", "svc", "-n", "dry", "-o", "name").stdout == ""

    kubectl(plane, "apply", "-f", str(app))
    preview = kubectl(plane, "apply", "--dry-run=server", "-f", str(reweighted(app, 50, 50)),
                      "-o", "jsonpath={.items[2].spec.http[0].route[*].weight}")
    assert preview.stdout == "50 50"  # the answer is what would be stored ...
    assert weights(plane, "dry") == "90 10"  # ... and nothing was
    kubectl(plane, "patch", "vs", "myapp", "-n", "dry", "--dry-run=server", "--type=json",
            "-p", '[{"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 0},'
            '{"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 100}]')
    assert weights(plane, "dry") == "90 10"
    deleted = kubectl(plane, "delete", "vs", "myapp", "-n", "dry", "--dry-run=server")
    assert "(server dry run)" in deleted.stdout
    assert weights(plane, "dry") == "90 10"

    # a dry run is judged as the write would be: an unknown field is refused
    bad = tmp_path / "bad.yaml"
    bad.write_text(app.read_text().replace("weight: 10", "wieght: 10"))
    refused = kubectl(plane, "apply", "--dry-run=server", "-f", str(bad), check=False)
    assert "unknown field 'wieght'" in refused.stderr

    # kubectl diff asks for a dry run and shows the change; exit 1 means "differs"
    diff = kubectl(plane, "diff", "-f", str(reweighted(app, 50, 50)), check=False)
    assert diff.returncode == 1, diff.stderr
    assert "-      weight: 90" in diff.stdout and "+      weight: 50" in diff.stdout
    assert weights(plane, "dry") == "90 10"
    kubectl(plane, "delete", "-f", str(app))


def test_strategic_merge_on_a_deployments_env_and_a_stale_replace(
        plane: ControlPlane, tmp_path: Path) -> None:
    """kubectl apply and kubectl patch send strategic merge patches for a Deployment,
    merging containers and env by name (the patch keys kubectl reads from the
    served OpenAPI schema); a replace carrying a resourceVersion someone else has moved
    past is a 409, as optimistic concurrency on an API server."""
    app = tmp_path / "deploy.yaml"
    text = in_namespace("smp", EXAMPLES / "deployments.yaml")
    docs = [d for d in yaml.safe_load_all(text) if d["metadata"]["name"] == "myapp-v1"]
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    app.write_text(yaml.safe_dump(docs[0]))
    kubectl(plane, "apply", "-f", str(app))
    container["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "3"},
                        {"name": "C", "value": "4"}]
    app.write_text(yaml.safe_dump(docs[0]))
    assert "deployment.apps/myapp-v1 configured" in kubectl(plane, "apply", "-f",
                                                           str(app)).stdout
    kubectl(plane, "patch", "deploy", "myapp-v1", "-n", "smp", "-p", json.dumps(
        {"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "A", "value": "9"}]}]}}}}))
    assert plane.client is not None
    stored = plane.client.get("/apis/apps/v1/namespaces/smp/deployments/myapp-v1").json()
    (app_container,) = stored["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e["value"] for e in app_container["env"]} == {
        "A": "9", "B": "3", "C": "4"}
    assert app_container["readinessProbe"]["httpGet"]["path"] == "/healthz"  # kept

    stale = tmp_path / "stale.yaml"
    stale.write_text(kubectl(plane, "get", "deploy", "myapp-v1", "-n", "smp",
                             "-o", "yaml").stdout)
    kubectl(plane, "scale", "deploy", "myapp-v1", "-n", "smp", "--replicas=1")
    refused = kubectl(plane, "replace", "-f", str(stale), check=False)
    assert refused.returncode == 1
    assert "Conflict" in refused.stderr and "has been modified" in refused.stderr
    assert kubectl(plane, "get", "deploy", "myapp-v1", "-n", "smp", "-o",
                   "jsonpath={.spec.replicas}").stdout == "1"
    kubectl(plane, "delete", "-f", str(app))
