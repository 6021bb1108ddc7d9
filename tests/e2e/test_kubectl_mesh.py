"""The real ``kubectl`` driving a live mesh (control plane, Envoy, pods) through the
kubeconfig ``meshpilot up`` writes: issue 14's commands, with the traffic measured.

Given the canary example applied with ``kubectl apply -f`` / When a 50/50 VirtualService
is applied with kubectl / Then requests through the mesh split about evenly and kubectl
reads the weights back; ``kubectl get pods`` and ``kubectl logs`` show the runtime's
pods and their app's output; ``kubectl scale`` and ``kubectl rollout restart`` change the
pods, and ``kubectl rollout status`` follows them as it follows a Deployment on a
cluster (it waits for status.observedGeneration, updated and available replicas).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.conftest import clean_env
from tests.e2e.mesh import Mesh
from tests.e2e.scenario import Then
from tests.integration.test_kubectl import EXAMPLES, in_namespace, kubectl


def test_kubectl_applies_a_50_50_split_that_the_mesh_routes(
        mesh: Mesh, then: Then, tmp_path: Path) -> None:
    cp = mesh.cp
    app = tmp_path / "app.yaml"
    # service.yaml first: the VirtualService names the subsets its DestinationRule defines
    app.write_text(in_namespace("default", EXAMPLES / "deployments.yaml",
                                EXAMPLES / "service.yaml", EXAMPLES / "virtualservice.yaml"))
    created = kubectl(cp, "apply", "-f", str(app)).stdout
    assert "virtualservice.networking.istio.io/myapp created" in created
    for name in ("myapp-v1", "myapp-v2"):
        status = kubectl(cp, "rollout", "status", f"deployment/{name}", "--timeout=60s", timeout=70)
        assert f'deployment "{name}" successfully rolled out' in status.stdout
    mesh.converge()
    then.split_within(100, {"v1": (70, 100), "v2": (1, 30)})  # the example's 90/10

    # the runtime's pods, with the columns kubectl shows, and their app's output
    rows = kubectl(cp, "get", "pods", "-o", "wide", "-l", "version in (v2)",
                   "--no-headers").stdout.splitlines()
    assert len(rows) == 2 and all(r.split()[1:3] == ["1/1", "Running"] for r in rows), rows
    assert all(r.split()[-1] == "myapp-v2" for r in rows)  # -o wide: its Deployment
    pod = rows[0].split()[0]
    logs = kubectl(cp, "logs", pod, "-c", "app").stdout
    assert f"demo-app v2 pod={pod} listening" in logs

    even = tmp_path / "vs-50-50.yaml"
    even.write_text(in_namespace("default", EXAMPLES / "virtualservice.yaml")
                    .replace("weight: 90", "weight: 50").replace("weight: 10", "weight: 50"))
    configured = kubectl(cp, "apply", "-f", str(even)).stdout
    assert configured.strip() == "virtualservice.networking.istio.io/myapp configured"
    assert kubectl(cp, "get", "virtualservice", "myapp", "-o",
                   "jsonpath={.spec.http[0].route[1].weight}").stdout == "50"
    mesh.converge()
    then.split_within(200, {"v1": (60, 140), "v2": (60, 140)})

    # scale v2 to 3 pods, watched with get pods -w; rollout status waits for the third
    watching = subprocess.Popen(
        ["kubectl", "get", "pods", "-w", "-l", "version=v2", "--output-watch-events",
         "--no-headers", "--request-timeout=90s"],
        env=clean_env(KUBECONFIG=str(cp.state_dir / "kubeconfig")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kubectl(cp, "scale", "deployment", "myapp-v2", "--replicas=3")
    kubectl(cp, "rollout", "status", "deployment/myapp-v2", "--timeout=60s", timeout=70)
    time.sleep(1.0)  # two looks of the watch after the third pod turned ready
    watching.terminate()
    seen, errors = watching.communicate(timeout=10)
    events = [line.split() for line in seen.splitlines()]
    assert {e[1] for e in events if e[0] == "ADDED"} >= {r.split()[0] for r in rows}, seen
    third = {e[1] for e in events} - {r.split()[0] for r in rows}
    assert len(third) == 1, (seen, errors)  # the new pod, added then modified to ready
    assert [e[2:4] for e in events if e[1] in third][-1] == ["1/1", "Running"], seen
    kubectl(cp, "wait", "--for=condition=Available", "deployment/myapp-v2", "--timeout=30s",
            timeout=40)
    assert kubectl(cp, "get", "deploy", "myapp-v2", "-o",
                   "jsonpath={.status.readyReplicas}/{.spec.replicas}").stdout == "3/3"
    ready = kubectl(cp, "get", "deploy", "myapp-v2", "--no-headers").stdout.split()
    assert ready[:2] == ["myapp-v2", "3/3"]

    # a restart replaces v1's pods with a new revision
    before = {p["metadata"]["name"] for p in mesh.pods_of("myapp-v1", terminating=False)}
    assert kubectl(cp, "rollout", "restart", "deployment", "myapp-v1").stdout.strip() == (
        "deployment.apps/myapp-v1 restarted")
    kubectl(cp, "rollout", "status", "deployment/myapp-v1", "--timeout=60s", timeout=70)
    after = {p["metadata"]["name"] for p in mesh.pods_of("myapp-v1", terminating=False)}
    assert len(after) == 2 and not after & before
    mesh.converge()
    then.split_within(100, {"v1": (25, 75), "v2": (25, 75)})


PROGRESSIVE = EXAMPLES.parent / "progressive"


def test_kubectl_follows_a_canary_rollout_to_success(mesh: Mesh, tmp_path: Path) -> None:
    """Flagger's documented kubectl workflow: apply the workload and its Canary, wait
    for the Canary's phase with ``kubectl wait --for=jsonpath``, apply a new revision,
    watch the phases with ``kubectl get canary -w`` (Flagger's printer columns), wait
    for Succeeded."""
    cp = mesh.cp
    kubectl(cp, "apply", "-f", str(PROGRESSIVE / "myapp.yaml"), "-f",
            str(PROGRESSIVE / "canary.yaml"))
    kubectl(cp, "wait", "--for=jsonpath={.status.phase}=Initialized", "canary/myapp",
            "-n", "progressive", "--timeout=90s", timeout=100)
    env = clean_env(KUBECONFIG=str(cp.state_dir / "kubeconfig"),
                    HOME=str(cp.state_dir.parent / "home"))
    watcher = subprocess.Popen(
        ["kubectl", "get", "canary", "myapp", "-n", "progressive", "-w", "--no-headers",
         "--request-timeout=150s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env)
    try:
        v2 = tmp_path / "myapp-v2.yaml"
        v2.write_text((PROGRESSIVE / "revisions" / "myapp-v2.yaml.rev").read_text())
        assert "deployment.apps/myapp configured" in kubectl(cp, "apply", "-f", str(v2)).stdout
        done = kubectl(cp, "wait", "--for=jsonpath={.status.phase}=Succeeded",
                       "canary/myapp", "-n", "progressive", "--timeout=150s", timeout=160)
        assert "canary.flagger.app/myapp condition met" in done.stdout
    finally:
        watcher.kill()
        lines, _ = watcher.communicate(timeout=10)
    phases = [line.split()[1] for line in lines.splitlines() if line.strip()]
    assert "Progressing" in phases, phases
    assert phases.index("Progressing") < len(phases) - 1  # later phases followed it
    # the weights stepped up while it progressed (STATUS, WEIGHT columns)
    weights = {int(line.split()[2]) for line in lines.splitlines()
               if line.split()[1:2] == ["Progressing"] and line.split()[2].isdigit()}
    assert max(weights, default=0) >= 10, lines
    assert kubectl(cp, "get", "vs", "myapp", "-n", "progressive", "-o",
                   "jsonpath={.spec.http[0].route[*].weight}").stdout.split() == ["100", "0"]
