"""The Argo Rollouts canary controller stepped tick by tick with a fake clock.

Each test names the Argo behaviour it follows: ``rollout/canary.go`` (steps),
``rollout/trafficrouting/istio/istio.go`` (``SetWeight`` on the named routes,
``UpdateHash`` on the DestinationRule subsets), the ``promote``/``abort``/``retry``
commands of the kubectl-argo-rollouts plugin, and the objects of
``examples/istio/istio-subset-split.yaml`` (see ``argo_harness``).
"""

from __future__ import annotations

import copy

from tests.unit.argo_harness import (
    ADMIN_ROUTE,
    DR,
    NAME,
    NS,
    VS,
    ArgoHarness,
    destination_rule,
    template,
)
from tests.unit.argo_harness import rollout as rollout_body

from meshpilot.delivery.argo import ArgoController
from meshpilot.delivery.argo.workloads import pod_template_hash


def promoted_v1() -> tuple[ArgoHarness, str]:
    h = ArgoHarness()
    h.tick()
    v1 = h.status["stableRS"]
    h.tick()
    assert h.status["phase"] == "Healthy"
    return h, v1


def test_the_first_template_becomes_stable_without_steps() -> None:
    # canary.go: with no stable ReplicaSet yet the steps are skipped
    h = ArgoHarness()
    h.tick()
    st = h.status
    v1 = st["currentPodHash"]
    assert st["stableRS"] == v1 and st["currentStepIndex"] == 4
    assert h.replicas(v1) == 2
    dep = h.cluster.get("Deployment", f"{NAME}-{v1}")
    assert dep is not None
    assert dep["spec"]["selector"]["matchLabels"] == {
        "app": NAME, "rollouts-pod-template-hash": v1}
    assert dep["spec"]["template"]["metadata"]["labels"]["rollouts-pod-template-hash"] == v1
    # istio.go UpdateHash: both subsets select the stable revision, the rule is marked
    assert h.subset_hashes() == {"stable": v1, "canary": v1}
    dr = h.cluster.get("DestinationRule", DR)
    assert dr is not None
    assert dr["metadata"]["annotations"][
        "argo-rollouts.argoproj.io/managed-by-rollouts"] == NAME
    assert dr["spec"]["trafficPolicy"] == destination_rule()["spec"]["trafficPolicy"]
    assert h.split() == {"stable": 100, "canary": 0}
    assert st["phase"] == "Progressing"  # until its pods are ready
    h.tick()
    st = h.status
    assert st["phase"] == "Healthy" and st["readyReplicas"] == 2
    assert {c["type"]: c["status"] for c in st["conditions"]}["Healthy"] == "True"


def test_subset_split_steps_pause_for_promote_and_then_for_a_duration() -> None:
    # examples/istio/istio-subset-split.yaml steps as the e2e: 20, pause {}, 50, pause 2s
    h, v1 = promoted_v1()
    v2 = h.release("v2")
    h.cluster.unready.add(f"{NAME}-{v2}")
    h.tick(3)
    # canary.go: the weight waits for the canary's pods (ceil(2 * 20%) = 1)
    assert h.replicas(v2) == 1
    assert h.split() == {"stable": 100, "canary": 0}
    assert h.subset_hashes() == {"stable": v1, "canary": v2}
    assert h.status["phase"] == "Progressing"
    h.cluster.unready.clear()
    h.tick()
    assert h.split() == {"stable": 80, "canary": 20}
    h.tick()
    st = h.status
    assert st["phase"] == "Paused" and st["currentStepIndex"] == 1
    assert st["pauseConditions"][0]["reason"] == "CanaryPauseStep"
    assert st["canary"]["weights"]["canary"] == {"weight": 20, "podTemplateHash": v2}
    assert st["canary"]["weights"]["stable"] == {"weight": 80, "podTemplateHash": v1}
    h.tick(30, dt=10)  # pause {} waits for promote however long
    assert h.status["phase"] == "Paused" and h.split() == {"stable": 80, "canary": 20}

    assert h.command("promote") == ""
    assert h.split() == {"stable": 50, "canary": 50}
    assert h.status["currentStepIndex"] == 3
    h.tick(dt=1.0)
    assert h.status["phase"] == "Paused"  # the 2 s pause starts
    h.tick(dt=1.0)
    assert h.status["phase"] == "Paused"  # 1 s of it
    h.tick(dt=1.5)
    assert h.status["currentStepIndex"] == 4
    h.tick(3)
    st = h.status
    # after the last step: the canary takes all replicas, then becomes stable
    assert st["phase"] == "Healthy" and st["stableRS"] == v2
    assert h.split() == {"stable": 100, "canary": 0}
    assert h.subset_hashes() == {"stable": v2, "canary": v2}
    assert h.replicas(v2) == 2 and h.replicas(v1) == 0
    assert h.admin_route() == ADMIN_ROUTE


def test_the_canary_takes_all_traffic_before_it_becomes_stable() -> None:
    # trafficrouting.go: after the last step the desired weight is the maximum (100)
    # until the new ReplicaSet is stable; then 0 with both subsets on the new hash
    h, v1 = promoted_v1()
    v2 = h.release("v2")
    h.tick(3)  # 20%, paused
    assert h.command("promote") == ""  # 50%
    seen = []
    for _ in range(8):
        h.tick(dt=3.0)
        seen.append((h.split()["canary"], h.subset_hashes()["stable"]))
    assert seen[-1] == (0, v2)
    assert seen.index((100, v1)) < seen.index((0, v2))
    assert [w for w, _ in seen if w not in (50, 100)] == [0] * seen.count((0, v2))


def test_only_the_weights_of_the_named_route_change() -> None:
    # istio.go reconcileVirtualService: only the routes named in routes are patched
    h, _ = promoted_v1()
    before = copy.deepcopy(h.cluster.get("VirtualService", VS))
    h.release("v2")
    h.tick(2)
    after = h.cluster.get("VirtualService", VS)
    assert before is not None and after is not None
    assert after["spec"]["http"][0] == before["spec"]["http"][0]
    assert after["spec"]["hosts"] == before["spec"]["hosts"]
    changed = [(a["weight"], b["weight"]) for a, b in zip(
        before["spec"]["http"][1]["route"], after["spec"]["http"][1]["route"], strict=True)]
    assert changed == [(100, 80), (0, 20)]


def test_host_level_splitting_sets_weights_by_service() -> None:
    # istio.go: without a destinationRule, destinations are canaryService / stableService;
    # service.go: those Services select their revision's pods by the hash label
    h = ArgoHarness(canaryService="web-canary", stableService="web-stable", trafficRouting={
        "istio": {"virtualService": {"name": VS}}})
    for name in ("web-canary", "web-stable"):
        h.cluster.put({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": name, "namespace": NS},
                       "spec": {"selector": {"app": NAME}, "ports": [{"port": 80}]}})
    vs = h.cluster.get("VirtualService", VS)
    assert vs is not None
    vs["spec"]["http"] = [{"route": [
        {"destination": {"host": "web-stable.default.svc.cluster.local"}, "weight": 100},
        {"destination": {"host": "web-canary"}, "weight": 0}]}]
    h.tick(2)
    v1 = h.status["stableRS"]
    v2 = h.release("v2")
    h.tick(2)
    vs = h.cluster.get("VirtualService", VS)
    assert vs is not None
    assert [d["weight"] for d in vs["spec"]["http"][0]["route"]] == [80, 20]
    selectors = {n: h.cluster.get("Service", n)["spec"]["selector"]  # type: ignore[index]
                 for n in ("web-canary", "web-stable")}
    assert selectors == {"web-canary": {"app": NAME, "rollouts-pod-template-hash": v2},
                         "web-stable": {"app": NAME, "rollouts-pod-template-hash": v1}}
    assert h.status["canary"]["weights"]["canary"]["serviceName"] == "web-canary"
    assert h.subset_hashes() == {"stable": None, "canary": None}  # no rule is edited


def test_a_missing_route_is_degraded_and_nothing_is_written() -> None:
    # istio.go getHttpRouteIndexesToPatch: a named route that is not there is an error
    h = ArgoHarness(trafficRouting={"istio": {
        "virtualService": {"name": VS, "routes": ["nope"]},
        "destinationRule": {"name": DR, "canarySubsetName": "canary",
                            "stableSubsetName": "stable"}}})
    h.tick()
    assert h.status["phase"] == "Degraded"
    assert "no HTTP route named nope" in h.status["message"]
    assert h.split() == {"stable": 100, "canary": 0}


def test_abort_sends_all_traffic_back_to_stable() -> None:
    # kubectl argo rollouts abort: weight 0, the canary scaled down, phase Degraded
    h, v1 = promoted_v1()
    v2 = h.release("v2")
    h.tick(3)
    assert h.split() == {"stable": 80, "canary": 20}
    assert h.command("abort") == ""
    st = h.status
    assert st["phase"] == "Degraded" and st["abort"] is True
    assert st["message"].startswith("RolloutAborted")
    assert h.split() == {"stable": 100, "canary": 0}
    # abortScaleDownDelaySeconds (default 30): the canary's pod stays meanwhile
    assert h.replicas(v2) == 1 and h.replicas(v1) == 2
    h.tick(29)
    assert h.replicas(v2) == 1
    h.tick(2)
    assert h.replicas(v2) == 0
    assert h.status["phase"] == "Degraded"
    assert h.command("promote") != ""  # an aborted Rollout is retried, not promoted
    assert h.command("retry") == ""
    h.tick(2)
    assert h.split() == {"stable": 80, "canary": 20}


def test_commands_that_do_not_apply_are_refused() -> None:
    h, _ = promoted_v1()
    assert "fully promoted" in h.command("promote")
    assert "fully promoted" in h.command("abort")
    h.cluster.unready.add(f"{NAME}-{h.release('v2')}")
    h.tick()
    # kubectl argo rollouts promote acts on a paused Rollout only
    assert "not paused" in h.command("promote")
    assert h.status["currentStepIndex"] == 0
    assert "not implemented" in h.command("explode")
    assert "not paused" in h.command("resume")


def test_a_restart_resumes_from_the_status() -> None:
    # the state lives in the Rollout's status, as Argo's does
    h, _ = promoted_v1()
    h.release("v2")
    h.tick(3)
    assert h.status["phase"] == "Paused"
    h.controller = ArgoController(h.clock, h.cluster, h.cluster)
    h.tick(5)
    assert h.status["phase"] == "Paused" and h.split() == {"stable": 80, "canary": 20}
    assert h.command("promote") == ""
    assert h.split() == {"stable": 50, "canary": 50}


def test_a_users_apply_that_resets_the_weights_is_corrected() -> None:
    # Argo reconciles the split on every pass of a Rollout under way
    h, _ = promoted_v1()
    v2 = h.release("v2")
    h.tick(3)
    vs = h.cluster.get("VirtualService", VS)
    assert vs is not None
    h.cluster.put({**vs, "spec": {**vs["spec"], "http": [
        vs["spec"]["http"][0], {**vs["spec"]["http"][1], "route": [
            {"destination": {"host": NAME, "subset": "stable"}, "weight": 100},
            {"destination": {"host": NAME, "subset": "canary"}, "weight": 0}]}]}})
    h.tick()
    assert h.split() == {"stable": 80, "canary": 20}
    assert h.status["currentPodHash"] == v2


def test_returning_to_the_stable_template_skips_the_steps() -> None:
    # canary.go: a template equal to the stable one is stable at once (a rollback)
    h, v1 = promoted_v1()
    v2 = h.release("v2")
    h.tick(3)
    assert h.release("v1") == v1
    h.tick(2)
    st = h.status
    assert st["phase"] == "Healthy" and st["currentPodHash"] == v1
    assert h.split() == {"stable": 100, "canary": 0}
    assert h.replicas(v2) == 0


def test_old_revisions_beyond_the_history_limit_are_deleted() -> None:
    # revisionHistoryLimit: older ReplicaSets are kept scaled to zero up to the limit
    h = ArgoHarness()
    h.cluster.put({**h.cluster.get("Rollout", NAME), "spec": {  # type: ignore[dict-item]
        **h.cluster.get("Rollout", NAME)["spec"], "revisionHistoryLimit": 1}})  # type: ignore[index]
    h.tick(2)
    hashes = [h.status["stableRS"]]
    for version in ("v2", "v3"):
        body = h.cluster.get("Rollout", NAME)
        assert body is not None
        new = copy.deepcopy(body)
        new["spec"]["template"]["spec"]["containers"][0]["image"] = f"demo:{version}"
        new["spec"]["strategy"]["canary"]["steps"] = []
        h.cluster.put(new)
        h.tick(4)
        hashes.append(h.status["stableRS"])
    assert len(set(hashes)) == 3
    assert h.replicas(hashes[0]) is None  # deleted: beyond the limit of 1
    assert h.replicas(hashes[1]) == 0 and h.replicas(hashes[2]) == 2
    assert h.status["meshpilot"]["oldRevisions"] == [hashes[1]]


def test_a_missing_rollout_ticks_to_none() -> None:
    h = ArgoHarness()
    assert h.controller.tick(NS, "other") is None


def test_deleting_a_rollout_deletes_its_revisions_and_leaves_the_routing() -> None:
    # Argo's ReplicaSets are owned by the Rollout and go with it; the VirtualService
    # and DestinationRule are the user's and keep what they last had
    h, v1 = promoted_v1()
    v2 = h.release("v2")
    h.tick(3)
    status = h.status
    h.controller.deleted(NS, NAME, status)
    assert h.replicas(v1) is None and h.replicas(v2) is None
    assert h.split() == {"stable": 80, "canary": 20}


def test_set_canary_scale_sets_the_canarys_pods_apart_from_its_weight() -> None:
    # types.go SetCanaryScale / GetCanaryReplicasOrWeight: the last setCanaryScale holds
    # until matchTrafficWeight; the step waits for those pods
    steps = [{"setCanaryScale": {"replicas": 2}}, {"setWeight": 10}, {"pause": {}},
             {"setCanaryScale": {"weight": 50}}, {"pause": {}},
             {"setCanaryScale": {"matchTrafficWeight": True}}, {"pause": {}}]
    h = ArgoHarness()
    h.tick(2)
    v1 = h.status["stableRS"]
    h.cluster.put(rollout_body("v2", steps))
    v2 = pod_template_hash(template("v2"))
    h.cluster.unready.add(f"{NAME}-{v2}")
    h.tick(3)
    assert h.replicas(v2) == 2 and h.status["currentStepIndex"] == 0  # waits for pods
    h.cluster.unready.clear()
    h.tick(3)
    assert h.status["phase"] == "Paused" and h.status["currentStepIndex"] == 2
    assert h.replicas(v2) == 2 and h.split() == {"stable": 90, "canary": 10}
    assert h.command("promote") == ""
    h.tick(2)
    assert h.replicas(v2) == 1 and h.status["currentStepIndex"] == 4  # 50% of 2 pods
    assert h.command("promote") == ""
    h.tick(2)
    assert h.replicas(v2) == 1 and h.status["currentStepIndex"] == 6  # ceil(2 * 10%)
    assert h.replicas(v1) == 2


def test_a_template_rolled_back_to_leaves_the_history() -> None:
    # an older revision that runs again is the current one, never deleted as history
    h = ArgoHarness()
    h.cluster.put({**h.cluster.get("Rollout", NAME), "spec": {  # type: ignore[dict-item]
        **h.cluster.get("Rollout", NAME)["spec"], "revisionHistoryLimit": 1}})  # type: ignore[index]
    h.tick(2)
    v1 = h.status["stableRS"]

    def release_without_steps(version: str) -> None:
        body = copy.deepcopy(h.cluster.get("Rollout", NAME))
        assert body is not None
        body["spec"]["template"]["spec"]["containers"][0]["image"] = f"demo:{version}"
        body["spec"]["strategy"]["canary"]["steps"] = []
        h.cluster.put(body)
        h.tick(4)

    release_without_steps("v2")
    release_without_steps("v1")
    assert h.status["stableRS"] == v1 and h.replicas(v1) == 2
    release_without_steps("v3")
    assert h.replicas(v1) == 0  # kept: the newest of the history
    assert v1 in h.status["meshpilot"]["oldRevisions"]
