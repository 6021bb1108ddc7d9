"""The control plane's adapters for the delivery core: writer, reader, metrics, webhooks."""

from __future__ import annotations

import copy
import time
from types import SimpleNamespace
from typing import Any

import pytest
from tests.builders import canary as canary_body
from tests.builders import deployment as deployment_body
from tests.builders import service

from meshpilot.api.flagger import CanaryWebhook
from meshpilot.api.kubernetes import Deployment
from meshpilot.delivery import BuiltinMetrics, WebhookResult, WriteError, spec_hash
from meshpilot.runtime.pod import template_hash
from meshpilot.server.config_service import ConfigService
from meshpilot.server.delivery_wiring import (
    ClusterView,
    DeliveryLoop,
    LocalWebhooks,
    StoreWriter,
    TelemetryTraffic,
)
from meshpilot.store import SqliteStore
from meshpilot.telemetry import History, Query


def deployment(version: str = "v1", replicas: int = 2) -> dict[str, Any]:
    """myapp whose template changes with ``version`` (selected by app only)."""
    return deployment_body(
        "myapp", labels={"app": "myapp", "version": version}, selector={"app": "myapp"},
        replicas=replicas, containers=[{"name": "app", "command": ["demo", version]}],
    )


def test_writer_applies_several_objects_and_reports_refusals(store: SqliteStore) -> None:
    writer = StoreWriter(ConfigService(store))
    svc = service("myapp", port=8080)
    writer.apply([deployment(), svc])
    assert {o.key.kind for o in store.list()} == {"Deployment", "Service"}
    bad = copy.deepcopy(svc)
    bad["spec"]["ports"][0]["port"] = -1
    with pytest.raises(WriteError, match="HTTP 422"):
        writer.apply([bad])
    stale = store.list(kind="Deployment")[0].body
    writer.apply([{**deployment("v2"), "metadata": stale["metadata"]}])
    with pytest.raises(WriteError, match="HTTP 409"):  # the same resourceVersion again
        writer.apply([{**deployment("v3"), "metadata": stale["metadata"]}])
    writer.delete("default", [("Service", "myapp"), ("Service", "nope")])
    assert {o.key.kind for o in store.list()} == {"Deployment"}


def test_view_reads_alert_providers_and_their_secrets(store: SqliteStore) -> None:
    """What the alert sender looks up: the stored AlertProvider (None when absent) and
    its Secret's decoded keys."""
    ConfigService(store).apply([("it.yaml", """\
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata: {name: on-call, namespace: ops}
spec: {type: msteams, secretRef: {name: teams-url}}
---
apiVersion: v1
kind: Secret
metadata: {name: teams-url, namespace: ops}
stringData: {address: "https://example.webhook.office.com/x"}
""")])
    view = ClusterView(store, lambda: None)
    provider = view.alert_provider("ops", "on-call")
    assert provider is not None and provider.spec.type == "msteams"
    assert view.alert_provider("default", "on-call") is None
    assert view.secret_data("ops", "teams-url") == {
        "address": b"https://example.webhook.office.com/x"}


class FakeRuntime:
    def __init__(self, current: str | None, pods: list[SimpleNamespace]) -> None:
        self.current = current
        self._pods = pods

    def deployment_status(self, namespace: str, name: str) -> dict[str, Any]:
        return {"templateHash": self.current, "specHash": self.current}

    def pods(self) -> list[SimpleNamespace]:
        return self._pods


def pod(hash_: str, ready: bool = True, phase: str = "Running") -> SimpleNamespace:
    return SimpleNamespace(namespace="default", deployment="myapp", template_hash=hash_,
                           ready=ready, phase=phase)


def test_workload_counts_ready_pods_of_the_stored_template_only(store: SqliteStore) -> None:
    StoreWriter(ConfigService(store)).apply([deployment("v2")])
    body = store.list(kind="Deployment")[0].body
    runtime_hash = template_hash(Deployment.model_validate(body))
    pods = [pod(runtime_hash), pod(runtime_hash, ready=False), pod("old"),
            pod(runtime_hash, phase="Terminating")]
    view = ClusterView(store, lambda: FakeRuntime(runtime_hash, pods))  # type: ignore[arg-type]
    ws = view.workload("default", "myapp")
    assert ws.exists and ws.desired == 2 and ws.ready == 1
    assert ws.template_hash == spec_hash(body["spec"]["template"])
    # the runtime has not taken the stored template yet: not ready with it
    lagging = ClusterView(store, lambda: FakeRuntime("old", pods))  # type: ignore[arg-type]
    assert lagging.workload("default", "myapp").template_hash != ws.template_hash
    assert not view.workload("default", "nope").exists


def history_with(points: list[tuple[float, dict[str, float]]]) -> History:
    history = History(capacity=100)
    base = (("reporter", "destination"), ("destination_workload", "myapp"),
            ("destination_workload_namespace", "default"))
    for t, by_code in points:
        samples: dict[Any, float] = {}
        for code, value in by_code.items():
            labels = (*base, ("response_code", code), ("pod", "p1"))
            samples[("istio_requests_total", labels)] = value
        total = sum(by_code.values())
        for le in ("5", "50", "500", "+Inf"):
            count = total if le != "5" else 0.0
            samples[("istio_request_duration_milliseconds_bucket",
                     (*base, ("pod", "p1"), ("le", le)))] = count
        history.record(t, samples)
    return history


def test_metrics_from_the_embedded_telemetry() -> None:
    history = history_with([(100.0, {"200": 0, "500": 0}), (101.0, {"200": 90, "500": 10}),
                            (102.0, {"200": 180, "500": 20})])
    metrics = BuiltinMetrics(TelemetryTraffic(
        lambda: SimpleNamespace(query=Query(history))))  # type: ignore
    rate = metrics.success_rate("default", "myapp", 10.0)
    assert rate.requests == 200 and rate.value == pytest.approx(90.0)
    p99 = metrics.latency_quantile("default", "myapp", 10.0, 0.99)
    assert p99.value is not None and 5 < p99.value <= 50
    none = metrics.success_rate("default", "other", 10.0)
    assert none.value is None and none.requests == 0
    assert BuiltinMetrics(TelemetryTraffic(lambda: None)).success_rate(
        "default", "myapp", 10).requests == 0


class Recorder:
    def __init__(self) -> None:
        self.urls: list[str] = []

    def call(self, hook: CanaryWebhook, payload: dict[str, Any]) -> WebhookResult:
        self.urls.append(hook.url)
        return WebhookResult(True, 200)


def test_flagger_load_tester_urls_go_to_the_built_in_tester() -> None:
    inner = Recorder()
    hooks = LocalWebhooks(inner, lambda: "http://127.0.0.1:4567")
    for url in ("http://flagger-loadtester.test/", "http://flagger-loadtester/gate/check",
                "http://meshpilot-loadtester.x.svc.cluster.local:80/rollback/check",
                "http://other.test/"):
        hooks.call(CanaryWebhook(name="h", url=url), {})
    # the hook's timeout goes along (Flagger's default, 10s, when it has none), so that a
    # command the tester runs ends before the call gives up
    hooks.call(CanaryWebhook(name="h", url="http://flagger-loadtester/?a=1", timeout="1m"), {})
    assert inner.urls == ["http://127.0.0.1:4567/?timeout=10s",
                          "http://127.0.0.1:4567/gate/check?timeout=10s",
                          "http://127.0.0.1:4567/rollback/check?timeout=10s",
                          "http://other.test/", "http://127.0.0.1:4567/?a=1&timeout=60s"]


def test_built_in_tester_calls_go_through_its_own_caller() -> None:
    # the caller that carries the tester's credential is used for the tester only
    inner, tester = Recorder(), Recorder()
    hooks = LocalWebhooks(inner, lambda: "http://127.0.0.1:4567", tester)
    hooks.call(CanaryWebhook(name="h", url="http://flagger-loadtester.test/"), {})
    hooks.call(CanaryWebhook(name="h", url="http://other.test/"), {})
    assert tester.urls == ["http://127.0.0.1:4567/?timeout=10s"]
    assert inner.urls == ["http://other.test/"]


def wait_for(what: str, done: Any, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.02)
    raise AssertionError(f"not within {limit_s}s: {what}")


def test_the_loop_steps_canaries_on_workers_and_reverts_a_deleted_one(
    store: SqliteStore,
) -> None:
    """The real loop over a real store: a Canary is stepped on its own worker, and its
    deletion is carried out on that worker (after any tick it is running)."""
    writer = StoreWriter(ConfigService(store))
    writer.apply([deployment(), canary_body(
        "myapp", port=8080, analysis={"interval": "1s", "metrics": []},
        revertOnDeletion=True)])
    loop = DeliveryLoop(store, lambda: None, TelemetryTraffic(lambda: None), lambda _: None,
                        mesh_proxy="http://127.0.0.1:9", loadtester_port=0,
                        tick_seconds=0.05)
    loop.start()
    try:
        def deployments() -> set[str]:
            return {o.key.name for o in store.list(kind="Deployment")}

        wait_for("the primary Deployment", lambda: "myapp-primary" in deployments())
        assert loop.workers.keys() == [("default", "myapp")]
        writer.delete("default", [("Canary", "myapp")])
        wait_for("the primary removed", lambda: deployments() == {"myapp"})
        wait_for("the worker retired", lambda: loop.workers.keys() == [])
    finally:
        began = time.monotonic()
        loop.stop()
        assert time.monotonic() - began < 10.0
