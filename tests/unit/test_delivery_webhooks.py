"""Every Flagger webhook type and the manual commands, stepped with a fake clock."""

from __future__ import annotations

from typing import Any

import httpx
from tests.unit.rollout_harness import NAME, Harness

from meshpilot.api.flagger import CanaryWebhook
from meshpilot.delivery import HttpWebhookCaller, Sample

GATE = "http://tester/gate/check"


def hooks(*items: tuple[str, str]) -> dict[str, Any]:
    return {"webhooks": [{"name": f"{t}-hook", "type": t, "url": u} for t, u in items]}


def released(*items: tuple[str, str], answer: int | None = None, **analysis: Any) -> Harness:
    """The rollout of v2 just released, over a Canary initialized on v1 whose analysis
    has the webhooks ``items`` (type, url), each answering ``answer`` from the start
    when given, and the other ``analysis`` fields."""
    h = Harness({**(hooks(*items) if items else {}), **analysis} or None)
    for _, url in items:
        if answer is not None:
            h.hooks.statuses[url] = answer
    h.initialize()
    h.release("v2")
    return h


def test_confirm_rollout_holds_in_waiting_without_scaling_up() -> None:
    """Flagger's runConfirmRolloutHooks: the first call, when the revision is detected,
    carries the phase the Canary had then; the next ones carry Waiting."""
    h = released(("confirm-rollout", GATE), answer=403)
    h.tick(3)
    assert h.phase == "Waiting"
    assert h.target_replicas() == 0
    assert any("waiting for approval confirm-rollout-hook" in m for m in h.messages())
    sent = h.hooks.called("confirm-rollout")
    assert [p["phase"] for p in sent] == ["Initialized", "Waiting", "Waiting"]
    payload = sent[-1]
    assert payload["name"] == NAME and payload["namespace"] == "default"
    assert payload["checksum"]
    h.hooks.statuses[GATE] = 200
    h.tick()
    assert h.phase == "Progressing" and h.target_replicas() == 2
    h.run_until(lambda: h.phase == "Succeeded")


def test_confirm_rollout_is_not_asked_once_the_analysis_runs() -> None:
    """Flagger's checkCanaryStatus returns before the confirm-rollout hooks for a
    Progressing Canary, and a revision superseding a running analysis goes straight back
    to Progressing (hasCanaryRevisionChanged): the gate guards the start only."""
    h = released(("confirm-rollout", GATE))
    h.run_until(lambda: h.status.get("canaryWeight") == 20)
    asked = len(h.hooks.called("confirm-rollout"))
    assert asked == 1
    h.hooks.statuses[GATE] = 403  # closing the gate now changes nothing
    h.tick(2)
    assert h.phase == "Progressing" and h.status["canaryWeight"] == 40
    h.release("v3")  # supersedes the running analysis
    h.run_until(lambda: h.status.get("canaryWeight") == 20)
    assert h.phase == "Progressing"
    h.run_until(lambda: h.phase == "Succeeded")
    assert len(h.hooks.called("confirm-rollout")) == asked
    assert h.primary_image() == "podinfo:v3"
    h.release("v4")  # a new rollout: asked again, and held
    h.tick(2)
    assert h.phase == "Waiting" and len(h.hooks.called("confirm-rollout")) == asked + 2


ALL_HOOKS = ("confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase",
             "confirm-promotion", "post-rollout", "event")


def test_every_hook_of_one_revision_gets_the_same_checksum() -> None:
    """Flagger's canaryChecksum hashes lastAppliedSpec (and tracked configs), never the
    promoted spec: it names the revision from confirm-rollout to post-rollout."""
    h = Harness(hooks(*((t, f"http://tester/{t}") for t in ALL_HOOKS)))
    h.initialize()
    h.hooks.calls.clear()
    h.release("v2")
    h.run_until(lambda: h.phase == "Succeeded")
    v2 = list(h.hooks.calls)
    assert {t for t, _, _ in v2} == set(ALL_HOOKS)
    assert len({p["checksum"] for _, _, p in v2}) == 1
    h.hooks.calls.clear()
    h.release("v3")
    h.tick()
    h.run_until(lambda: h.phase == "Succeeded")
    v3 = {p["checksum"] for _, _, p in h.hooks.calls}
    assert len(v3) == 1 and v3 != {v2[0][2]["checksum"]}


def test_hook_payloads_carry_the_phase_flagger_reports() -> None:
    """Flagger's scheduler_hooks.go sends Progressing to pre-rollout, rollout,
    confirm-traffic-increase and confirm-promotion hooks whatever the phase (also while
    WaitingPromotion), and the Canary's phase to post-rollout hooks."""
    promote = "http://tester/confirm-promotion"
    h = Harness(hooks(*((t, f"http://tester/{t}") for t in ALL_HOOKS if t != "event")))
    h.hooks.statuses[promote] = 403
    h.initialize()
    h.release("v2")
    h.run_until(lambda: h.phase == "WaitingPromotion")
    h.tick(2)
    h.hooks.statuses[promote] = 200
    h.run_until(lambda: h.phase == "Succeeded")
    for kind in ("pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion"):
        assert {p["phase"] for p in h.hooks.called(kind)} == {"Progressing"}, kind
    assert len(h.hooks.called("confirm-promotion")) >= 3
    assert [p["phase"] for p in h.hooks.called("post-rollout")] == ["Succeeded"]


def test_pre_rollout_failures_count_and_roll_back_at_threshold() -> None:
    url = "http://tester/smoke"
    h = released(("pre-rollout", url), answer=500, threshold=2)
    h.run_until(lambda: h.status.get("failedChecks") == 1)
    assert h.canary_weight_routed() == 0
    h.run_until(lambda: h.phase == "Failed")
    assert "pre-rollout webhook pre-rollout-hook failed" in h.status["history"][-1]["reason"]


def test_rollout_hooks_run_every_iteration_before_checks_and_count_failures() -> None:
    url = "http://tester/"
    h = released(("rollout", url), threshold=1)
    h.run_until(lambda: h.status.get("canaryWeight") == 30)
    assert len(h.hooks.called("rollout")) == 2  # at 10 and at 20
    h.hooks.statuses[url] = 0  # timeout
    h.tick()
    assert h.phase == "Failed"
    assert "timed out" in h.status["history"][-1]["reason"]


def test_confirm_traffic_increase_holds_the_weight() -> None:
    url = "http://tester/more"
    h = released(("confirm-traffic-increase", url))
    h.run_until(lambda: h.status.get("canaryWeight") == 20)
    h.hooks.statuses[url] = 403
    h.tick(3)
    assert h.status["canaryWeight"] == 20 and h.phase == "Progressing"
    h.hooks.statuses[url] = 202
    h.tick()
    assert h.status["canaryWeight"] == 30


def test_confirm_promotion_waits_while_checks_keep_running() -> None:
    url = "http://tester/promote"
    h = released(("confirm-promotion", url), answer=403, threshold=1)
    h.run_until(lambda: h.phase == "WaitingPromotion")
    calls = len(h.metrics.calls)
    h.tick(2)
    assert h.phase == "WaitingPromotion" and len(h.metrics.calls) > calls
    h.metrics.success[NAME] = Sample(10.0, 100)
    h.tick()
    assert h.phase == "Failed"


def test_confirm_promotion_approved_promotes() -> None:
    url = "http://tester/promote"
    h = released(("confirm-promotion", url), answer=403)
    h.run_until(lambda: h.phase == "WaitingPromotion")
    h.hooks.statuses[url] = 200
    h.run_until(lambda: h.phase == "Succeeded")


def test_rollback_hook_returning_2xx_rolls_back() -> None:
    url = "http://tester/rollback/check"
    h = released(("rollback", url), answer=403)
    h.run_until(lambda: h.status.get("canaryWeight") == 20)
    h.hooks.statuses[url] = 200
    h.tick()
    assert h.phase == "Failed" and h.canary_weight_routed() == 0
    assert "rollback webhook rollback-hook invoked" in h.status["history"][-1]["reason"]


def test_post_rollout_runs_after_promotion_and_failure_is_only_logged() -> None:
    url = "http://tester/post"
    h = released(("post-rollout", url), answer=500)
    h.run_until(lambda: h.phase == "Succeeded")
    assert [p["phase"] for p in h.hooks.called("post-rollout")] == ["Succeeded"]
    assert any("post-rollout webhook post-rollout-hook failed" in m for m in h.messages())


def test_post_rollout_runs_after_rollback() -> None:
    h = Harness({**hooks(("post-rollout", "http://tester/post")), "threshold": 1})
    h.initialize()
    h.metrics.success[NAME] = Sample(1.0, 100)
    h.release("v2")
    h.run_until(lambda: h.phase == "Failed")
    assert [p["phase"] for p in h.hooks.called("post-rollout")] == ["Failed"]


def test_event_hooks_receive_every_event() -> None:
    h = released(("event", "http://tester/events"))
    h.run_until(lambda: h.phase == "Succeeded")
    sent = [p["metadata"]["eventMessage"] for p in h.hooks.called("event")]
    assert sent == h.messages()
    assert "New revision detected! Scaling up podinfo.default" in sent
    first = h.hooks.called("event")[0]["metadata"]
    assert first["eventType"] == "Normal" and first["timestamp"].isdigit()


def test_event_hooks_keep_their_metadata() -> None:
    """Flagger's CallEventWebhook adds the hook's metadata to eventMessage, eventType
    and timestamp, without letting it replace those three."""
    metadata = {"environment": "staging", "cluster": "eu-1", "eventType": "forged"}
    h = Harness({"webhooks": [{"name": "events", "type": "event",
                               "url": "http://tester/events", "metadata": metadata}]})
    h.initialize()
    sent = h.hooks.called("event")
    assert sent
    for p in sent:
        assert p["metadata"]["environment"] == "staging" and p["metadata"]["cluster"] == "eu-1"
        assert p["metadata"]["eventType"] == "Normal"
        assert set(p["metadata"]) == {"environment", "cluster", "eventMessage", "eventType",
                                      "timestamp"}


# --- manual commands ------------------------------------------------------------------


def test_pause_and_resume() -> None:
    h = released()
    h.run_until(lambda: h.status.get("canaryWeight") == 20)
    assert h.command("pause") is None
    h.tick(5)
    assert h.status["canaryWeight"] == 20 and h.status["paused"] is True
    assert h.command("resume") is None  # resumes at once: the next step runs now
    assert h.status["canaryWeight"] == 30 and h.status["paused"] is False


def test_abort_rolls_back_now() -> None:
    h = released()
    h.run_until(lambda: h.status.get("canaryWeight") == 20)
    assert h.command("abort") is None
    assert h.phase == "Failed" and h.canary_weight_routed() == 0
    assert h.status["history"][-1]["reason"] == "aborted by user"


def test_promote_skips_remaining_steps() -> None:
    h = released()
    h.run_until(lambda: h.status.get("canaryWeight") == 10)
    assert h.command("promote") is None
    assert h.phase == "Promoting"
    h.run_until(lambda: h.phase == "Succeeded", dt=1.0)
    assert h.primary_image() == "podinfo:v2"
    assert h.status["history"][-1]["reason"] == "promoted by user"


def test_retry_restarts_a_failed_rollout() -> None:
    h = Harness({"threshold": 1})
    h.initialize()
    h.metrics.success[NAME] = Sample(50.0, 100)
    h.release("v2")
    h.run_until(lambda: h.phase == "Failed")
    h.tick()  # drain
    h.metrics.success[NAME] = Sample(100.0, 100)
    assert h.command("retry") is None
    assert h.phase == "Progressing"
    h.run_until(lambda: h.phase == "Succeeded")


def test_commands_refused_when_they_do_not_apply() -> None:
    h = Harness()
    h.initialize()
    assert "no rollout to abort" in (h.command("abort") or "")
    assert "only a failed rollout can be retried" in (h.command("retry") or "")
    assert "is not paused" in (h.command("resume") or "")
    assert "unknown command" in (h.command("explode") or "")


# --- the HTTP caller ------------------------------------------------------------------


def _caller(handler: Any) -> HttpWebhookCaller:
    return HttpWebhookCaller(httpx.Client(transport=httpx.MockTransport(handler)),
                             retry_delay_s=0)


def test_http_caller_accepts_200_to_202_only() -> None:
    hook = CanaryWebhook(name="h", url="http://t/", type="rollout")
    for code, ok in ((200, True), (202, True), (204, False), (403, False), (500, False)):
        result = _caller(lambda r, c=code: httpx.Response(c, text="no"))\
            .call(hook, {"name": "x"})
        assert result.ok is ok, code


def test_http_caller_retries_and_sends_payload() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(500 if len(seen) < 3 else 200)

    hook = CanaryWebhook(name="h", url="http://t/", retries=2)
    assert _caller(handler).call(hook, {"name": "podinfo"}).ok
    assert len(seen) == 3 and b'"name":"podinfo"' in seen[0].replace(b" ", b"")


def test_http_caller_timeout_fails() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    hook = CanaryWebhook(name="h", url="http://t/", timeout="1s")
    result = _caller(handler).call(hook, {})
    assert not result.ok and "timed out after 1s" in result.message


def test_promote_refuses_an_unanalysed_new_revision() -> None:
    h = released()
    h.run_until(lambda: h.status.get("canaryWeight") == 10)
    h.release("v3")
    assert "changed since this analysis started" in (h.command("promote") or "")
    assert h.primary_image() == "podinfo:v1"
