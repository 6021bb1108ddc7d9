"""Revision numbers and ``undo --to-revision``, tick by tick with a fake clock.

kubectl-argo-rollouts numbers a Rollout's revisions by the ``rollout.argoproj.io/revision``
annotation of its ReplicaSets: each template the Rollout starts to run gets the next
number, a template rolled back to included (Argo's ``getNewReplicaSet`` bumps it);
``undo --to-revision N`` puts back the template of the revision numbered N and says
"unable to find" for a number no kept revision has. Blue-green ``promote --full`` follows
``rollout/bluegreen.go`` with ``status.promoteFull``: no pause and no analysis, the
switch once the new revision is available.
"""

from __future__ import annotations

from typing import Any

from tests.unit.argo_harness import NAME, ArgoHarness, template
from tests.unit.argo_harness import rollout as rollout_body
from tests.unit.test_argo_bluegreen import ACTIVE, BlueGreen, smoke_template

from meshpilot.delivery.argo.summary import summarize
from meshpilot.delivery.argo.workloads import REVISION_ANNOTATION, pod_template_hash

STEPS: list[dict[str, Any]] = [{"setWeight": 20}, {"pause": {}}]


def promoted(h: ArgoHarness, version: str, history_limit: int | None = None) -> str:
    """Release ``version`` (with that revisionHistoryLimit) and promote it fully; its
    hash."""
    pod_hash = h.release(version)
    if history_limit is not None:
        body = rollout_body(version, steps=STEPS)
        body["spec"]["revisionHistoryLimit"] = history_limit
        h.cluster.put(body)
    h.tick(2)
    assert h.command("promote-full") == ""
    h.tick(4)
    assert h.status["stableRS"] == pod_hash, h.status
    return pod_hash


def annotated(h: ArgoHarness, pod_hash: str) -> Any:
    body = h.cluster.get("Deployment", f"{NAME}-{pod_hash}")
    assert body is not None
    return body["metadata"]["annotations"].get(REVISION_ANNOTATION)


def numbers(h: ArgoHarness) -> dict[str, int]:
    ro = h.cluster.rollout("default", NAME)
    assert ro is not None
    return {r["podTemplateHash"]: r["revision"] for r in summarize(ro, h.cluster)["revisions"]}


def three_revisions() -> tuple[ArgoHarness, str, str, str]:
    h = ArgoHarness(steps=STEPS)
    h.tick(2)
    v1 = h.status["stableRS"]
    return h, v1, promoted(h, "v2"), promoted(h, "v3")


def test_each_new_template_gets_the_next_revision_number_on_its_deployment() -> None:
    h, v1, v2, v3 = three_revisions()
    assert numbers(h) == {v1: 1, v2: 2, v3: 3}
    assert [annotated(h, x) for x in (v1, v2, v3)] == ["1", "2", "3"]


def test_undo_to_revision_puts_back_that_revisions_template_with_a_new_number() -> None:
    """``undo --to-revision 1`` from revision 3: v1's template comes back and runs through
    the steps as a new rollout; its Deployment is revision 4 now (Argo renumbers the
    ReplicaSet it reuses), 1 is no longer a revision number."""
    h, v1, _, v3 = three_revisions()
    decision = h.controller.command("default", NAME, "undo", to_revision=1)
    assert decision is not None and decision.refused == ""
    body = h.cluster.get("Rollout", NAME)
    assert body is not None and body["spec"]["template"] == template("v1")
    h.tick(2)
    st = h.status
    assert (st["currentPodHash"], st["stableRS"]) == (v1, v3)
    assert h.split() == {"stable": 80, "canary": 20}
    assert numbers(h)[v1] == 4 and annotated(h, v1) == "4"
    again = h.controller.command("default", NAME, "undo", to_revision=1)
    assert again is not None and "unable to find revision 1" in again.refused


def test_undo_to_a_revision_not_kept_or_current_is_refused_and_changes_nothing() -> None:
    h, _, _, v3 = three_revisions()
    for number, why in ((9, "unable to find revision 9 in the history (kept: 1, 2, 3)"),
                        (3, "revision 3 is the current revision")):
        decision = h.controller.command("default", NAME, "undo", to_revision=number)
        assert decision is not None and why in decision.refused
    body = h.cluster.get("Rollout", NAME)
    assert body is not None and pod_template_hash(body["spec"]["template"]) == v3


def test_revisions_beyond_the_history_limit_lose_their_number() -> None:
    """revisionHistoryLimit 1: the oldest revision is deleted and undo cannot name it."""
    h = ArgoHarness(steps=STEPS)
    h.tick(2)
    v1 = h.status["stableRS"]
    promoted(h, "v2", history_limit=1)
    promoted(h, "v3", history_limit=1)
    assert h.cluster.get("Deployment", f"{NAME}-{v1}") is None
    decision = h.controller.command("default", NAME, "undo", to_revision=1)
    assert decision is not None and "kept: 2, 3" in decision.refused


# --- blue-green promote --full ---------------------------------------------------------------


def test_blue_green_promote_full_skips_the_pause_and_both_analyses() -> None:
    """With autoPromotionEnabled: false and pre/post analysis whose measurements would
    never pass: promote --full switches the active Service once v2 is available and v2
    is stable at once; the pre-promotion run is terminated, no post-promotion run."""
    forever = [[0]] * 20
    h = BlueGreen(*forever, autoPromotionEnabled=False,
                  prePromotionAnalysis={"templates": [{"templateName": "slow"}]},
                  postPromotionAnalysis={"templates": [{"templateName": "slow"}]})
    h.cluster.put({**smoke_template(), "metadata": {"name": "slow", "namespace": "default"},
                   "spec": {"metrics": [{"name": "ok", "interval": "1s",
                                         "successCondition": "result == [1]",
                                         "failureLimit": 100,
                                         "provider": {"web": {"url": "http://127.0.0.1:9/"}}}]}})
    v2 = h.release("v2")
    h.tick(3)
    pre = h.status["blueGreen"]["prePromotionAnalysisRunStatus"]["name"]
    assert h.selects(ACTIVE) == h.v1 and h.status["phase"] == "Progressing"
    assert h.command("promote-full") == ""
    h.tick()
    st = h.status
    assert st["phase"] == "Healthy" and st["stableRS"] == v2 and h.selects(ACTIVE) == v2
    assert st["promoteFull"] is False
    assert "postPromotionAnalysisRunStatus" not in st["blueGreen"]
    run = h.cluster.get("AnalysisRun", pre)
    assert run is not None and run["spec"].get("terminate") is True
    assert "fully promoted" in h.command("promote-full")


def test_blue_green_promote_full_waits_for_the_new_pods() -> None:
    h = BlueGreen(autoPromotionEnabled=False)
    v2 = h.release("v2")
    h.cluster.unready.add(f"rollout-bluegreen-{v2}")
    h.tick()
    assert h.command("promote-full") == ""
    h.tick(3)
    assert h.selects(ACTIVE) == h.v1 and h.status["stableRS"] == h.v1
    h.cluster.unready.clear()
    h.tick(2)
    assert h.selects(ACTIVE) == v2 and h.status["stableRS"] == v2


def test_blue_green_promote_full_refused_once_aborted() -> None:
    h = BlueGreen(autoPromotionEnabled=False)
    h.release("v2")
    h.tick(2)
    assert h.command("abort") == ""
    assert "aborted" in h.command("promote-full")
