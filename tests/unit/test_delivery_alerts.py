"""Which alerts a rollout sends, when, at which severity, and to whom: stepped tick by
tick with a fake clock, the posts recorded as they would go over the wire.

Each test names the Flagger behaviour it follows, from ``pkg/controller/events.go``
(``alert()``: the severity filter, the provider's namespace, the Secret's address and
token, the defaults) and the ``c.alert(...)`` call sites in ``scheduler.go`` and
``scheduler_hooks.go`` (which message at which severity, and ``muteAlert``).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from tests.unit.rollout_harness import NAME, Harness

from meshpilot.delivery import Sample

INFO, WARN, ERROR = "http://chat/info", "http://chat/warn", "http://chat/error"
GATE = "http://tester/gate/check"

NEW_TARGET = "New Deployment detected, initialization completed."
NEW_REVISION = "New revision detected, progressing canary analysis."
PROMOTED = "Canary analysis completed successfully, promotion finished."


def provider(name: str, address: str, namespace: str = "default", **spec: Any
             ) -> dict[str, Any]:
    return {"apiVersion": "flagger.app/v1beta1", "kind": "AlertProvider",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "slack", "address": address, **spec}}


def alert(name: str, severity: str, **ref: Any) -> dict[str, Any]:
    return {"name": name, "severity": severity, "providerRef": {"name": name, **ref}}


def alerting(analysis: dict[str, Any] | None = None, **spec: Any) -> Harness:
    """podinfo's Canary with three Slack alerts, one per severity, each its own
    provider and receiver address."""
    alerts = [alert("info", "info"), alert("warn", "warn"), alert("error", "error")]
    h = Harness({"alerts": alerts, **(analysis or {})}, **spec)
    for name, url in (("info", INFO), ("warn", WARN), ("error", ERROR)):
        h.cluster.put(provider(name, url))
    return h


def failing(h: Harness) -> None:
    h.metrics.success[NAME] = Sample(80.0, 400)


def hooks(*items: tuple[str, str], mute: bool = False) -> dict[str, Any]:
    return {"webhooks": [{"name": f"{t}-hook", "type": t, "url": u, "muteAlert": mute}
                         for t, u in items]}


# --- the events Flagger alerts on, and the severity filter ----------------------------


def test_initialization_alerts_info_with_the_canarys_settings() -> None:
    """setPhaseInitialized: "New <kind> detected, initialization completed.", info,
    with alertMetadata (Target, Failed checks threshold, Progress deadline, Traffic
    routing); warn and error alerts do not receive info."""
    h = alerting()
    h.initialize()
    assert h.alerts.texts(INFO) == [NEW_TARGET]
    assert h.alerts.texts(WARN) == h.alerts.texts(ERROR) == []
    (post,) = h.alerts.posts
    attachment = post.body["attachments"][0]
    assert attachment["author_name"] == "podinfo.default"
    assert attachment["color"] == "good"
    assert [(f["title"], f["value"]) for f in attachment["fields"]] == [
        ("Target", "Deployment/podinfo.default"), ("Failed checks threshold", "2"),
        ("Progress deadline", "600s"), ("Traffic routing", "Weight step: 10 max: 50")]
    assert post.body["username"] == "flagger" and post.body["channel"] == "general"


def test_a_promoted_revision_alerts_info_at_detection_and_at_the_end() -> None:
    """checkCanaryStatus: "New revision detected, progressing canary analysis." (info,
    with metadata) when the rollout starts; the Finalising branch: "Canary analysis
    completed successfully, promotion finished." (info, no metadata). Nothing else of a
    healthy rollout alerts."""
    h = alerting()
    h.initialize()
    h.alerts.posts.clear()
    h.release("v2")
    h.run_until(lambda: h.phase == "Succeeded")
    assert h.alerts.texts(INFO) == [NEW_REVISION, PROMOTED]
    assert h.alerts.texts(WARN) == h.alerts.texts(ERROR) == []
    detected, done = h.alerts.posts
    assert detected.body["attachments"][0]["fields"][0]["title"] == "Target"
    assert done.body["attachments"][0]["fields"] == []


def test_a_failed_revision_alerts_error_to_every_severity() -> None:
    """rollback(): "Failed checks threshold reached N", error; an info alert receives
    everything, warn receives warn and error, error only error."""
    h = alerting()
    h.initialize()
    h.alerts.posts.clear()
    h.release("v2")
    failing(h)
    h.run_until(lambda: h.phase == "Failed")
    failed = "Failed checks threshold reached 2"
    assert h.alerts.texts(INFO) == [NEW_REVISION, failed]
    assert h.alerts.texts(WARN) == [failed]
    assert h.alerts.texts(ERROR) == [failed]
    (error,) = [p for p in h.alerts.posts if p.url == ERROR]
    assert error.body["attachments"][0]["color"] == "danger"
    assert error.body["attachments"][0]["author_name"] == "podinfo.default"


def test_an_alert_is_sent_after_the_state_it_reports_is_written() -> None:
    """The controller sends once the status is persisted: the rollback alert is posted
    with the Canary already Failed in the store (Flagger's rollback() alerts before it
    syncs the Failed status; meshpilot never reports what a crash could undo)."""
    h = alerting()
    h.alerts.observe = lambda: h.phase
    h.initialize()
    h.release("v2")
    failing(h)
    h.run_until(lambda: h.phase == "Failed")
    (error,) = [p for p in h.alerts.posts if p.url == ERROR]
    assert error.seen == "Failed"


def test_an_alert_without_severity_receives_everything() -> None:
    """Flagger documents info as the default severity (its CRD allows ""), so an alert
    without one gets every message."""
    h = Harness({"alerts": [{"name": "all", "providerRef": {"name": "all"}}]})
    h.cluster.put(provider("all", INFO))
    h.initialize()
    h.release("v2")
    failing(h)
    h.run_until(lambda: h.phase == "Failed")
    assert h.alerts.texts(INFO) == [NEW_TARGET, NEW_REVISION,
                                    "Failed checks threshold reached 2"]


def test_a_canary_that_never_gets_ready_alerts_the_progress_deadline() -> None:
    """A canary not ready within progressDeadlineSeconds: "Progress deadline exceeded
    ...", error (scheduler.go, the !retriable branch)."""
    h = alerting(progressDeadlineSeconds=60)
    h.initialize()
    h.alerts.posts.clear()
    h.release("v2")
    h.cluster.unready_templates.add(h.cluster.workload("default", NAME).template_hash or "")
    h.run_until(lambda: h.phase == "Failed")
    (error,) = h.alerts.texts(ERROR)
    assert error.startswith("Progress deadline exceeded") and "podinfo.default" in error


def test_skipped_analysis_alerts_that_it_was_skipped_not_completed() -> None:
    """shouldSkipAnalysis: "Canary analysis was skipped, promotion finished.", info,
    instead of the completed message."""
    h = alerting(skipAnalysis=True)
    h.initialize()
    h.alerts.posts.clear()
    h.release("v2")
    h.run_until(lambda: h.phase == "Succeeded")
    assert h.alerts.texts(INFO) == [NEW_REVISION,
                                    "Canary analysis was skipped, promotion finished."]


def test_a_rollback_webhook_alerts_warn_not_error() -> None:
    """runRollbackHooks passing: "Rolling back manual webhook invoked", warn; the
    failed-checks alert is not sent (no check failed)."""
    url = "http://tester/rollback/check"
    h = alerting(hooks(("rollback", url)))
    h.hooks.statuses[url] = 404
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 20)
    h.alerts.posts.clear()
    h.hooks.statuses[url] = 200
    h.run_until(lambda: h.phase == "Failed")
    assert h.alerts.texts(WARN) == ["Rolling back manual webhook invoked"]
    assert h.alerts.texts(ERROR) == []


def test_a_user_abort_alerts_warn() -> None:
    """meshpilot's abort is a manual rollback, alerted as Flagger alerts its manual
    rollback webhook: warn."""
    h = alerting()
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 10)
    h.alerts.posts.clear()
    assert h.command("abort") is None
    assert h.alerts.texts(WARN) == ["Rolling back, aborted by user"]
    assert h.alerts.texts(ERROR) == []


# --- gates waiting for approval, and muteAlert ----------------------------------------


def test_confirm_rollout_alerts_warn_once_when_it_starts_waiting() -> None:
    """runConfirmRolloutHooks: "Canary is waiting for approval.", warn, only when the
    phase becomes Waiting; once the gate opens, the new-revision alert."""
    h = alerting(hooks(("confirm-rollout", GATE)))
    h.hooks.statuses[GATE] = 403
    h.initialize()
    h.alerts.posts.clear()
    h.release("v2")
    h.tick(4)
    assert h.phase == "Waiting"
    assert h.alerts.texts(WARN) == ["Canary is waiting for approval."]
    assert h.alerts.texts(INFO) == ["Canary is waiting for approval."]
    h.hooks.statuses[GATE] = 200
    h.tick()
    assert h.phase == "Progressing"
    assert h.alerts.texts(INFO)[-1] == NEW_REVISION


def test_confirm_traffic_increase_alerts_warn_each_time_it_holds() -> None:
    """runConfirmTrafficIncreaseHooks alerts "Canary traffic increase is waiting for
    approval." (warn) every time the closed gate is asked, not once."""
    url = "http://tester/traffic"
    h = alerting(hooks(("confirm-traffic-increase", url)))
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 10)
    h.hooks.statuses[url] = 403
    asked = len(h.hooks.called("confirm-traffic-increase"))
    h.tick(3)
    held = len(h.hooks.called("confirm-traffic-increase")) - asked
    assert held >= 2 and h.status["canaryWeight"] == 10
    assert h.alerts.texts(WARN) == ["Canary traffic increase is waiting for approval."] * held


def test_confirm_promotion_alerts_warn_once_when_it_starts_waiting() -> None:
    """runConfirmPromotionHooks: "Canary promotion is waiting for approval.", warn,
    when the phase becomes WaitingPromotion."""
    url = "http://tester/promote"
    h = alerting(hooks(("confirm-promotion", url)))
    h.hooks.statuses[url] = 403
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.phase == "WaitingPromotion")
    h.tick(3)
    assert h.alerts.texts(WARN) == ["Canary promotion is waiting for approval."]
    h.hooks.statuses[url] = 200
    h.run_until(lambda: h.phase == "Succeeded")
    assert h.alerts.texts(INFO)[-1] == PROMOTED


HELD = {"confirm-rollout": "Waiting", "confirm-traffic-increase": "Progressing",
        "confirm-promotion": "WaitingPromotion"}


@pytest.mark.parametrize("kind", sorted(HELD))
def test_mute_alert_mutes_the_waiting_alert_of_its_gate(kind: str) -> None:
    """A hook with muteAlert: true sends no waiting-for-approval alert
    (scheduler_hooks.go, `if !webhook.MuteAlert`); the rollout's other alerts still go."""
    h = alerting(hooks((kind, GATE), mute=True))
    h.initialize()
    if kind != "confirm-rollout":
        h.release("v2")
        h.run_until(lambda: h.status.get("canaryWeight") == 10)
    h.hooks.statuses[GATE] = 403
    if kind == "confirm-rollout":
        h.release("v2")
    h.tick(8)
    asked = len(h.hooks.called(kind))
    assert h.phase == HELD[kind] and asked >= 2
    assert h.primary_image() == "podinfo:v1"  # held by the gate
    assert h.alerts.texts(WARN) == []
    h.hooks.statuses[GATE] = 200
    h.run_until(lambda: h.phase == "Succeeded")
    assert h.alerts.texts(INFO)[0] == NEW_TARGET and h.alerts.texts(INFO)[-1] == PROMOTED


def test_mute_alert_mutes_only_its_own_hook() -> None:
    """The alert follows the hook that closed the gate: an unmuted second gate still
    alerts while the muted first one is open."""
    muted, loud = "http://tester/muted", "http://tester/loud"
    body = {"webhooks": [
        {"name": "muted", "type": "confirm-rollout", "url": muted, "muteAlert": True},
        {"name": "loud", "type": "confirm-rollout", "url": loud}]}
    h = alerting(body)
    h.hooks.statuses[loud] = 403
    h.initialize()
    h.release("v2")
    h.tick(2)
    assert h.phase == "Waiting"
    assert h.alerts.texts(WARN) == ["Canary is waiting for approval."]


# --- providers: namespace, Secret, defaults, failures -----------------------------------


def test_provider_namespace_secret_address_and_token() -> None:
    """alert(): providerRef.namespace, else the Canary's; the secretRef Secret's
    ``address`` replaces spec.address and its ``token`` is sent as a bearer token to
    Slack only; username and channel as the provider sets them."""
    h = Harness({"alerts": [alert("ops", "info", namespace="ops"), alert("team", "info")]})
    h.cluster.put(provider("ops", "http://unused/", namespace="ops", username="bot",
                           channel="on-call", secretRef={"name": "ops-url"},
                           proxy="http://proxy.ops:3128"))
    h.cluster.put({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "ops-url", "namespace": "ops"},
                   "stringData": {"address": "http://chat/ops", "token": "s3cret"}})
    h.cluster.put(provider("team", "http://chat/team", type="discord"))
    h.initialize()
    by_url = {p.url: p for p in h.alerts.posts}
    assert set(by_url) == {"http://chat/ops", "http://chat/team/slack"}
    ops = by_url["http://chat/ops"]
    assert (ops.token, ops.proxy) == ("s3cret", "http://proxy.ops:3128")
    assert (ops.body["username"], ops.body["channel"]) == ("bot", "on-call")
    assert by_url["http://chat/team/slack"].token is None


def test_a_missing_provider_or_secret_costs_only_that_alert(
        caplog: pytest.LogCaptureFixture) -> None:
    """alert() logs and continues when the provider, its Secret or the Secret's address
    is missing; the other alerts still go, and the rollout is not affected."""
    h = Harness({"alerts": [alert("gone", "info"), alert("nosecret", "info"),
                            alert("noaddress", "info"), alert("ok", "info")]})
    h.cluster.put(provider("nosecret", "http://x/", secretRef={"name": "absent"}))
    h.cluster.put(provider("noaddress", "http://x/", secretRef={"name": "tokenonly"}))
    h.cluster.put({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "tokenonly", "namespace": "default"},
                   "stringData": {"token": "tok-123"}})
    h.cluster.put(provider("ok", INFO))
    with caplog.at_level(logging.WARNING, logger="meshpilot.delivery.alerts"):
        h.initialize()
    assert [p.url for p in h.alerts.posts] == [INFO]
    logged = caplog.text
    assert "no AlertProvider default/gone" in logged
    assert "Secret absent does not exist" in logged
    assert "has no key 'address'" in logged
    assert "tok-123" not in logged


def test_a_failing_receiver_is_logged_and_never_breaks_the_rollout(
        caplog: pytest.LogCaptureFixture) -> None:
    """A post that fails is logged (provider and host, never the token or the address's
    path) and the rollout goes on exactly as without alerts."""
    h = Harness({"alerts": [alert("down", "info")]})
    h.cluster.put(provider("down", "http://chat/secret-path", secretRef={"name": "down"}))
    h.cluster.put({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "down", "namespace": "default"},
                   "stringData": {"address": "http://chat/secret-path", "token": "tok-456"}})
    h.alerts.failing.add("http://chat/secret-path")
    with caplog.at_level(logging.WARNING, logger="meshpilot.delivery.alerts"):
        h.initialize()
        h.release("v2")
        h.run_until(lambda: h.phase == "Succeeded")
    assert len(h.alerts.posts) == 3  # every alert was tried
    assert "alert provider default/down (slack, http://chat/…)" in caplog.text
    assert "answered 500" in caplog.text
    assert "tok-456" not in caplog.text and "secret-path" not in caplog.text


def test_a_canary_without_alerts_posts_nothing() -> None:
    h = Harness()
    h.cluster.put(provider("info", INFO))
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.phase == "Succeeded")
    assert h.alerts.posts == []


def test_a_commands_alerts_do_not_hold_up_its_answer() -> None:
    """An abort answers at once; its alert goes out after, from another thread, even when
    the receiver takes its whole timeout (here: until the test lets it go)."""
    import threading
    import time

    release = threading.Event()
    h = alerting()
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.status.get("canaryWeight") == 10)
    h.alerts.posts.clear()
    h.alerts.observe = lambda: release.wait(10)
    started = time.monotonic()
    decision = h.controller.command("default", NAME, "abort")
    assert decision is not None and decision.refused is None
    assert time.monotonic() - started < 1.0  # not the receiver's 10 s
    assert h.phase == "Failed"
    assert h.alerts.texts(WARN) == []  # not yet: the receiver is still busy
    release.set()
    assert h.controller.queued_alerts.flush(5.0)
    assert h.alerts.texts(WARN) == ["Rolling back, aborted by user"]
    assert h.controller.queued_alerts.close(5.0)
