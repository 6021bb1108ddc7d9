"""kubectl-argo-rollouts' operations on a Rollout, tick by tick with a fake clock.

Each case names the plugin behaviour it follows: ``pause`` sets ``spec.paused`` and the
controller then holds the steps (phase Paused, message "manually paused"); ``promote``
clears ``spec.paused`` and ends a pause step; ``promote --full`` sets
``status.promoteFull``, which skips every remaining step and analysis straight to 100 %.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import typer
from tests.unit.argo_harness import NAME, NS, ArgoHarness, template
from tests.unit.argo_harness import rollout as rollout_body
from tests.unit.test_argo_bluegreen import NAME as BG_NAME
from tests.unit.test_argo_bluegreen import BlueGreen
from tests.unit.test_argo_bluegreen import rollout as bg_rollout

from meshpilot.api.argo import Rollout
from meshpilot.cli import argo_status
from meshpilot.delivery.argo.summary import summarize
from meshpilot.delivery.argo.workloads import pod_template_hash
from meshpilot.validation.argo_fields import rollout_findings

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


def _rollout(h: ArgoHarness) -> Rollout:
    ro = h.cluster.rollout(NS, NAME)
    assert ro is not None
    return ro


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


# --- rollout status: the plugin's view ---------------------------------------------------


def test_status_shows_step_set_and_actual_weight_images_and_replicas() -> None:
    """``get rollout``'s fields (rollout_info.go): Step i/n, SetWeight as
    GetCurrentSetWeight (the last setWeight at or before the step; 0 once aborted; 100
    past the last step), ActualWeight from status.canary.weights, the images of the
    stable and canary revisions, replicas over the revisions."""
    h, v1, v2 = canary_at_20()
    view = summarize(_rollout(h), h.cluster)
    assert (view["status"], view["strategy"], view["step"]) == ("Paused", "Canary", "1/4")
    assert (view["setWeight"], view["actualWeight"]) == (20, 20)
    assert view["images"] == [{"image": "demo:v1", "tags": ["stable"]},
                              {"image": "demo:v2", "tags": ["canary"]}]
    assert view["replicas"] == {"desired": 2, "current": 3, "updated": 1, "ready": 3,
                                "available": 3}
    assert [(r["podTemplateHash"], r["roles"]) for r in view["revisions"]] == [
        (v1, ["stable"]), (v2, ["canary"])]
    assert h.command("abort") == ""
    h.tick()
    view = summarize(_rollout(h), h.cluster)
    assert (view["status"], view["setWeight"], view["actualWeight"]) == ("Degraded", 0, 0)
    assert h.command("retry") == "" and h.command("promote-full") == ""
    h.tick(4)
    view = summarize(_rollout(h), h.cluster)
    assert (view["status"], view["step"], view["setWeight"]) == ("Healthy", "4/4", 100)
    assert view["images"] == [{"image": "demo:v2", "tags": ["stable"]}]
    assert [(r["podTemplateHash"], r["roles"], r["replicas"]) for r in view["revisions"]] == [
        (v2, ["stable"], 2), (v1, [], 0)]


def test_status_lists_the_analysis_runs_with_their_phase() -> None:
    """The plugin lists a Rollout's AnalysisRuns under its revisions with their phase."""
    h, _, _ = canary_at_20()
    h.cluster.put({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
                   "metadata": {"name": "run-1", "namespace": NS}})
    h.cluster.put_analysis_run_status(NS, "run-1", {"phase": "Failed", "message": "low"})
    body = h.cluster.get("Rollout", NAME)
    assert body is not None
    body["status"]["meshpilot"]["analysisRuns"] = ["run-1", "gone"]
    view = summarize(_rollout(h), h.cluster)
    assert view["analysisRuns"] == [{"name": "run-1", "phase": "Failed", "message": "low"}]


def test_status_text_has_the_plugin_fields() -> None:
    h, _, _ = canary_at_20()
    text = argo_status.header(summarize(_rollout(h), h.cluster)).plain
    lines = {line.split(":")[0].strip(): line.split(":", 1)[1].strip()
             for line in text.splitlines() if ":" in line and line.split(":", 1)[1].strip()}
    assert lines["Name"] == NAME and lines["Status"] == "Paused"
    assert lines["Message"] == "CanaryPauseStep" and lines["Strategy"] == "Canary"
    assert (lines["Step"], lines["SetWeight"], lines["ActualWeight"]) == ("1/4", "20", "20")
    assert lines["Images"] == "demo:v1 (stable)" and "demo:v2 (canary)" in text
    assert lines["Desired"] == "2" and lines["Updated"] == "1"


def _view(phase: str, weight: int) -> dict[str, Any]:
    return {"kind": "Rollout", "name": NAME, "namespace": NS, "status": phase,
            "message": "", "strategy": "Canary", "step": "1/4", "setWeight": weight,
            "actualWeight": weight, "images": [], "revisions": [], "analysisRuns": [],
            "replicas": dict.fromkeys(("desired", "current", "updated", "ready",
                                       "available"), 2)}


@pytest.mark.parametrize(("end", "code"), [("Healthy", 0), ("Degraded", 1)])
def test_watch_prints_on_change_and_exits_as_the_plugin(
        end: str, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    """``status --watch`` (status.go WatchStatus): it ends at Healthy (0) or Degraded
    (an error, 1); a view is printed again only when it changed."""
    seq = iter([_view("Progressing", 20), _view("Progressing", 20),
                _view("Progressing", 50), _view(end, 0)])
    try:
        argo_status.status(next(seq), lambda: next(seq), True, 5.0, 0.0, "text")
        got = 0
    except typer.Exit as exc:
        got = exc.exit_code
    assert got == code
    printed = capsys.readouterr().out
    assert printed.count("Name:") == 3 and f"Status:         {end}" in printed


def test_watch_gives_up_after_the_timeout() -> None:
    views = iter([_view("Paused", 20)] * 1000)
    started = time.monotonic()
    with pytest.raises(typer.Exit) as exc:
        argo_status.status(next(views), lambda: next(views), True, 0.3, 0.05, "text")
    assert exc.value.exit_code == 1 and time.monotonic() - started < 2


# --- undo ---------------------------------------------------------------------------------


def spec_template(h: ArgoHarness) -> Any:
    body = h.cluster.get("Rollout", NAME)
    assert body is not None
    return body["spec"]["template"]


def test_undo_during_a_rollout_goes_back_to_stable_at_once() -> None:
    """plugin ``undo``: the template becomes the previous revision's (here the stable
    one); a template equal to stable skips the steps (canary.go), all traffic back."""
    h, v1, v2 = canary_at_20()
    assert h.command("undo") == ""
    assert spec_template(h) == template("v1")
    assert pod_template_hash(spec_template(h)) == v1
    h.tick(2)
    st = h.status
    assert (st["phase"], st["stableRS"], st["currentPodHash"]) == ("Healthy", v1, v1)
    assert h.split() == {"stable": 100, "canary": 0}
    assert h.replicas(v2) == 0 and h.replicas(v1) == 2


def test_undo_after_a_promotion_rolls_the_older_revision_out_through_the_steps() -> None:
    """Undo of a fully promoted v2 brings back v1's template as a new rollout (Argo
    runs the steps for it, as no rollbackWindow is set)."""
    h, v1, v2 = canary_at_20()
    assert h.command("promote-full") == ""
    h.tick(4)
    assert h.status["stableRS"] == v2
    assert h.command("undo") == ""
    h.tick(2)
    st = h.status
    assert (st["stableRS"], st["currentPodHash"]) == (v2, v1)
    assert h.split() == {"stable": 80, "canary": 20} and h.replicas(v1) == 1


def test_undo_without_a_previous_revision_is_refused() -> None:
    h = ArgoHarness(steps=STEPS)
    h.tick(2)
    assert "no previous revision" in h.command("undo")
    assert spec_template(h) == template("v1")


# --- blue-green and validation --------------------------------------------------------------


def test_blue_green_refuses_pause_and_resume_and_shows_its_services() -> None:
    """Only the canary strategy's steps are held by spec.paused here; a blue-green
    Rollout's view has no step or weights (the plugin prints none for BlueGreen) and
    names the revisions by the Services that select them."""
    h = BlueGreen(autoPromotionEnabled=False)
    for command in ("pause", "resume"):
        assert "canary Rollouts only" in h.command(command)
    v2 = h.release("v2")
    h.tick(2)
    ro = h.cluster.rollout(NS, BG_NAME)
    assert ro is not None
    view = summarize(ro, h.cluster)
    assert (view["strategy"], view["step"], view["setWeight"]) == ("BlueGreen", None, None)
    assert [(r["podTemplateHash"], r["roles"]) for r in view["revisions"]] == [
        (h.v1, ["active"]), (v2, ["preview"])]
    assert h.command("undo") == ""  # back to the active revision
    h.tick(2)
    assert h.status["phase"] == "Healthy" and h.status["currentPodHash"] == h.v1


def test_spec_paused_is_accepted_on_a_canary_and_refused_on_a_blue_green_rollout() -> None:
    body = rollout_body("v1", steps=STEPS)
    body["spec"]["paused"] = True
    assert rollout_findings(body) == []
    bg = bg_rollout("v1")
    bg["spec"]["paused"] = True
    (finding,) = rollout_findings(bg)
    assert finding.code.code == "MP0057" and finding.path == ("spec", "paused")
    assert "autoPromotionEnabled" in finding.message


# --- restart ------------------------------------------------------------------------------


def pod_restart(h: ArgoHarness, pod_hash: str) -> Any:
    body = h.cluster.get("Deployment", f"{NAME}-{pod_hash}")
    assert body is not None
    return ((body["spec"]["template"]["metadata"].get("annotations") or {})
            .get("kubectl.kubernetes.io/restartedAt"))


def test_restart_stamps_every_running_revision_once() -> None:
    """plugin ``restart``: spec.restartAt = now; the controller replaces the pods of the
    stable and the canary revision (here each revision's pod template gets the restart
    time, which rolls its pods as ``kubectl rollout restart`` does); the revisions keep
    their pod-template hash and the steps their place."""
    h, v1, v2 = canary_at_20()
    assert pod_restart(h, v1) is None
    assert h.command("restart") == ""
    body = h.cluster.get("Rollout", NAME)
    assert body is not None
    at = body["spec"]["restartAt"]
    assert at.endswith("Z")
    h.tick()
    stamps = {pod_restart(h, v1), pod_restart(h, v2)}
    assert len(stamps) == 1 and None not in stamps
    assert h.status["currentPodHash"] == v2 and h.status["currentStepIndex"] == 1
    assert h.split() == {"stable": 80, "canary": 20}
    writes = len(h.cluster.writes)
    h.tick(2)  # once restarted, nothing is written again for it
    assert all(o["kind"] != "Deployment" for w in h.cluster.writes[writes:] for o in w)
    assert h.command("undo") == ""  # the stamp is not part of the template put back
    h.tick(2)
    assert h.status["currentPodHash"] == v1 and h.status["phase"] == "Healthy"
    h.release("v1")  # the user's file, without restartAt: v1's pods are not restarted again
    h.tick(2)
    assert pod_restart(h, v1) == stamps.pop()


def test_a_restart_at_in_the_future_waits_for_its_time() -> None:
    """Argo leaves the pods alone until spec.restartAt has come."""
    h, v1, _ = canary_at_20()
    body = h.cluster.get("Rollout", NAME)
    assert body is not None
    body["spec"]["restartAt"] = "2100-01-01T00:00:00Z"
    h.cluster.put(body)
    h.tick(2)
    assert pod_restart(h, v1) is None
