"""kubectl get's columns, computed from objects as served."""

from __future__ import annotations

from datetime import UTC, datetime

from meshpilot.server.kube_tables import age, table

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


def test_canary_columns_come_from_flaggers_status_fields() -> None:
    canary = {"metadata": {"name": "myapp", "namespace": "default",
                           "creationTimestamp": "2026-01-02T11:00:00Z"},
              "spec": {"analysis": {"interval": "10s", "stepWeight": 10}},
              "status": {"phase": "Progressing", "canaryWeight": 20, "failedChecks": 1,
                         "lastTransitionTime": "2026-01-02T11:59:00Z"}}
    got = table("Canary", [canary], "7", NOW)
    names = [c["name"] for c in got["columnDefinitions"]]
    assert names == ["Name", "Status", "Weight", "FailedChecks", "Interval", "StepWeight",
                     "LastTransitionTime"]
    assert got["rows"][0]["cells"] == ["myapp", "Progressing", 20, 1, "10s", 10,
                                       "2026-01-02T11:59:00Z"]
    assert got["rows"][0]["object"]["metadata"]["namespace"] == "default"
    assert got["metadata"] == {"resourceVersion": "7"}


def test_deployment_ready_counts_and_default_columns() -> None:
    deployment = {"metadata": {"name": "web", "creationTimestamp": "2026-01-02T11:58:30Z"},
                  "spec": {"replicas": 3},
                  "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert table("Deployment", [deployment], "1", NOW)["rows"][0]["cells"] == [
        "web", "2/3", 3, 2, "90s"]
    other = table("ConfigMap", [{"metadata": {"name": "cfg"}}], "1", NOW)
    assert [c["name"] for c in other["columnDefinitions"]] == ["Name", "Age"]
    assert other["rows"][0]["cells"] == ["cfg", "<unknown>"]


def test_ages() -> None:
    assert [age(s) for s in (5, 119, 200, 600, 7200, 4 * 3600 + 60, 30 * 3600,
                             3 * 86400 + 3600, 40 * 86400)] == [
        "5s", "119s", "3m20s", "10m", "120m", "4h1m", "30h", "3d1h", "40d"]


def test_pod_columns_are_kubectls_with_its_deployment_under_wide() -> None:
    """kubectl's pod printer: NAME READY STATUS RESTARTS AGE, IP and NODE with -o wide
    (here with the owning Deployment beside them); the app and its sidecar are ready
    together."""
    pod = {"metadata": {"name": "web-abc", "namespace": "default",
                        "ownerReferences": [{"kind": "Deployment", "name": "web"}]},
           "spec": {"nodeName": "node-b"},
           "status": {"phase": "Running", "ready": True, "restartCount": 2,
                      "podIP": "127.10.0.3", "startedAt": NOW.timestamp() - 75}}
    got = table("Pod", [pod], "1", NOW)
    assert [c["name"] for c in got["columnDefinitions"]] == [
        "Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Deployment"]
    assert [c["priority"] for c in got["columnDefinitions"]] == [0, 0, 0, 0, 0, 1, 1, 1]
    assert got["rows"][0]["cells"] == ["web-abc", "1/1", "Running", 2, "75s", "127.10.0.3",
                                       "node-b", "web"]
    starting = table("Pod", [{"metadata": {"name": "p"}, "status": {"phase": "Pending"}}],
                     "1", NOW)
    assert starting["rows"][0]["cells"][:5] == ["p", "0/1", "Pending", "", "<unknown>"]
def test_horizontal_pod_autoscaler_columns_are_kubectls() -> None:
    """kubectl get hpa: REFERENCE, TARGETS (current/target per metric, <unknown> before
    the first measurement), MINPODS, MAXPODS, REPLICAS, AGE."""
    body = {"metadata": {"name": "web"}, "spec": {
        "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1,
        "maxReplicas": 5, "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": 50}}},
            {"type": "Pods", "pods": {"metric": {"name": "istio_requests_per_second"},
                                      "target": {"type": "AverageValue", "averageValue": "10"}}}]},
        "status": {"currentReplicas": 2, "currentMetrics": [{"type": "Resource", "resource": {
            "name": "cpu", "current": {"averageUtilization": 12, "averageValue": "12m"}}}]}}
    out = table("HorizontalPodAutoscaler", [body], "1")
    assert [c["name"] for c in out["columnDefinitions"]] == [
        "Name", "Reference", "Targets", "MinPods", "MaxPods", "Replicas", "Age"]
    assert out["rows"][0]["cells"][:6] == [
        "web", "Deployment/web", "cpu: 12%/50%, <unknown>/10", 1, 5, 2]
