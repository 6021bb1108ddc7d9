"""kubectl-argo-rollouts' operations on a Rollout, tick by tick with a fake clock.

Each case names the plugin behaviour it follows: ``pause`` sets ``spec.paused`` and the
controller then holds the steps (phase Paused, message "manually paused"); ``promote``
clears ``spec.paused`` and ends a pause step; ``promote --full`` sets
``status.promoteFull``, which skips every remaining step and analysis straight to 100 %.
"""

from __future__ import annotations

from typing import Any

from tests.unit.argo_harness import NAME, ArgoHarness, template
from tests.unit.argo_harness import rollout as rollout_body

from meshpilot.delivery.argo.workloads import pod_template_hash

STEPS: list[dict[str, Any]] = [{"setWeight": 20}, {"pause": {"duration": "2s"}},
                               {"setWeight": 50}, {"pause": {}}]


def canary_at_20() -> tuple[ArgoHarness, str, str]:
    """v1 stable, v2 at its first step (20 %) and in the timed pause."""
    h = ArgoHarness(steps=STEPS)
    h.tick(2)
    v1 = h.status["stableRS"]
    v2 = h.release("v2")
    h.tick(3)
    assert h.split() == {"stable": 80, "canary": 20}
    assert h.status["currentStepIndex"] == 1 and h.status["phase"] == "Paused"
    return h, v1, v2


def release_paused(h: ArgoHarness, version: str) -> str:
    """Apply template ``version`` with spec.paused: true kept (the user's file has it)."""
    body = rollout_body(version, steps=STEPS)
    body["spec"]["paused"] = True
    h.cluster.put(body)
    return pod_template_hash(template(version))


def spec_paused(h: ArgoHarness) -> Any:
    body = h.cluster.get("Rollout", NAME)
    assert body is not None
    return body["spec"].get("paused")


def test_pause_holds_a_timed_pause_and_every_later_step_until_resume() -> None:
    """plugin ``pause``: spec.paused = true; the 2 s pause step does not end while the
    Rollout is paused, the weight stays at 20 %; ``resume`` (spec.paused = false, as
    Argo's promote does to spec.paused) lets it go on."""
    h, _, v2 = canary_at_20()
    assert h.command("pause") == ""
    assert spec_paused(h) is True
    h.tick(5)
    st = h.status
    assert (st["phase"], st["message"]) == ("Paused", "manually paused")
    assert st["currentStepIndex"] == 1 and h.split() == {"stable": 80, "canary": 20}
    assert h.replicas(v2) == 1
    assert "already paused" in h.command("pause")
    assert h.command("resume") == ""
    assert spec_paused(h) is False
    h.tick(4)
    assert h.status["currentStepIndex"] == 3 and h.split() == {"stable": 50, "canary": 50}
    assert "not paused" in h.command("resume")


def test_pause_resets_a_split_an_apply_changed_but_moves_nothing() -> None:
    """Argo reconciles the traffic split on every pass, also while paused; a new
    template applied while paused is not rolled out (as a paused Deployment)."""
    h, v1, v2 = canary_at_20()
    assert h.command("pause") == ""
    v3 = release_paused(h, "v3")
    h.tick(3)
    assert h.status["phase"] == "Paused" and h.status["currentPodHash"] == v3
    assert h.split() == {"stable": 100, "canary": 0}  # the unstarted v3 gets none
    assert h.replicas(v3) is None and h.replicas(v1) == 2
    assert h.status["stableRS"] == v1 and v2 != v3


def test_promote_clears_spec_paused() -> None:
    """plugin ``promote`` on a paused Rollout unpauses it (spec.paused = false) and
    ends the pause step it is at (its pauseConditions are cleared)."""
    h, _, _ = canary_at_20()
    assert h.command("pause") == ""
    assert h.command("promote") == ""
    assert spec_paused(h) is False
    h.tick(2)
    assert h.status["currentStepIndex"] == 3 and h.split() == {"stable": 50, "canary": 50}


def test_a_fully_promoted_rollout_can_be_paused_and_a_new_template_waits() -> None:
    """A paused Rollout that is Healthy shows Paused; a new template waits for resume."""
    h, v1, _ = canary_at_20()
    assert h.command("promote-full") == ""
    h.tick(4)
    assert h.status["phase"] == "Healthy"
    assert h.command("pause") == ""
    h.tick()
    assert (h.status["phase"], h.status["message"]) == ("Paused", "manually paused")
    v3 = release_paused(h, "v3")
    h.tick(3)
    assert h.replicas(v3) is None
    assert h.command("resume") == ""
    h.tick(3)
    assert h.split() == {"stable": 80, "canary": 20} and h.replicas(v3) == 1
    assert v1 != v3


def test_promote_full_skips_the_remaining_steps_to_stable() -> None:
    """plugin ``promote --full`` (status.promoteFull): from step 1 of 4 the canary is
    scaled to all replicas, takes 100 % and becomes stable; the old revision goes to 0;
    promoteFull is cleared once stable."""
    h, v1, v2 = canary_at_20()
    assert h.command("promote-full") == ""
    assert h.status["promoteFull"] is True and h.status["currentStepIndex"] == 4
    weights = []
    for _ in range(6):
        h.tick()
        weights.append(h.split()["canary"])
        if h.status["phase"] == "Healthy":
            break
    st = h.status
    assert st["phase"] == "Healthy" and st["stableRS"] == v2
    assert 100 in weights  # all traffic on the new revision before it became stable
    assert h.replicas(v2) == 2 and h.replicas(v1) == 0
    assert st["promoteFull"] is False
    assert "fully promoted" in h.command("promote-full")


def test_promote_full_refused_on_an_aborted_rollout() -> None:
    """An aborted Rollout is retried (plugin ``retry``) before it is promoted."""
    h, _, _ = canary_at_20()
    assert h.command("abort") == ""
    h.tick()
    assert "aborted" in h.command("promote-full")
    assert h.status["phase"] == "Degraded"
