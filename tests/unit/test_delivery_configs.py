"""ConfigMaps and Secrets are part of a revision, after Flagger's config tracker: the
primary reads ``NAME-primary`` copies made at initialization and at promotion, and a
changed config is a new revision that is analysed, never a change the primary takes
unjudged (before this, editing a ConfigMap restarted the primary's pods with it)."""

from __future__ import annotations

from typing import Any

from tests.unit.rollout_harness import NAME, Harness, deployment

from meshpilot.delivery import configs

CONFIG = "podinfo-config"


def config_map(data: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CONFIG, "namespace": "default", **meta}, "data": data}


def reading_config(version: str = "v1") -> dict[str, Any]:
    target = deployment(version)
    pod = target["spec"]["template"]["spec"]
    pod["containers"][0]["env"] = [{"name": "GREETING", "valueFrom": {
        "configMapKeyRef": {"name": CONFIG, "key": "greeting"}}}]
    pod["volumes"] = [{"name": "token", "secret": {"secretName": "podinfo-token"}},
                      {"name": "pull", "secret": {"secretName": "registry"}}]
    return target


def harness() -> Harness:
    h = Harness()
    h.cluster.put(config_map({"greeting": "hello"}))
    h.cluster.put({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "podinfo-token", "namespace": "default"},
                   "stringData": {"token": "t1"}})
    h.cluster.put({"apiVersion": "v1", "kind": "Secret",
                   "type": "kubernetes.io/dockerconfigjson",
                   "metadata": {"name": "registry", "namespace": "default"},
                   "stringData": {".dockerconfigjson": "{}"}})
    h.cluster.put(reading_config())
    return h


def primary_reads(h: Harness) -> tuple[str, str]:
    pod = h.cluster.get("Deployment", f"{NAME}-primary")["spec"]["template"]["spec"]
    env = pod["containers"][0]["env"][0]["valueFrom"]["configMapKeyRef"]["name"]
    return env, pod["volumes"][0]["secret"]["secretName"]


def copy_of(h: Harness, kind: str = "ConfigMap", name: str = CONFIG) -> dict[str, Any]:
    obj = h.cluster.get(kind, name + "-primary")
    assert obj is not None, f"no {kind} {name}-primary"
    return obj


def test_the_primary_reads_copies_made_at_initialization() -> None:
    h = harness()
    h.initialize()
    assert primary_reads(h) == (f"{CONFIG}-primary", "podinfo-token-primary")
    assert copy_of(h)["data"] == {"greeting": "hello"}
    assert copy_of(h, "Secret", "podinfo-token")["stringData"] == {"token": "t1"}
    assert h.cluster.get("Secret", "registry-primary") is None  # not a tracked type
    assert h.status["primaryConfigs"] == ["ConfigMap/podinfo-config", "Secret/podinfo-token"]
    target_pod = h.cluster.get("Deployment", NAME)["spec"]["template"]["spec"]
    assert target_pod["volumes"][0]["secret"]["secretName"] == "podinfo-token"


def test_a_changed_config_is_a_new_revision_the_primary_gets_only_when_promoted() -> None:
    h = harness()
    h.initialize()
    h.cluster.put(config_map({"greeting": "bonjour"}))
    h.tick()
    assert h.phase == "Progressing", h.messages()
    assert any("New revision detected" in m for m in h.messages())
    assert h.status["trackedConfigs"]["ConfigMap/podinfo-config"] == configs.digest(
        config_map({"greeting": "bonjour"}))
    h.run_until(lambda: h.canary_weight_routed() > 0)
    assert copy_of(h)["data"] == {"greeting": "hello"}  # the primary is untouched
    h.run_until(lambda: h.phase == "Succeeded")
    assert copy_of(h)["data"] == {"greeting": "bonjour"}
    assert primary_reads(h)[0] == f"{CONFIG}-primary"


def test_a_failed_config_change_leaves_the_primary_on_the_old_config() -> None:
    from meshpilot.delivery.providers import Sample

    h = harness()
    h.initialize()
    h.cluster.put(config_map({"greeting": "broken"}))
    h.metrics.success[NAME] = Sample(10.0, 500)
    h.run_until(lambda: h.phase == "Failed")
    assert copy_of(h)["data"] == {"greeting": "hello"}


def test_configs_opted_out_are_not_tracked() -> None:
    h = Harness()
    h.cluster.put(config_map({"greeting": "hello"},
                             annotations={configs.TRACKING_ANNOTATION: "disabled"}))
    h.cluster.put(reading_config())
    h.initialize()
    assert primary_reads(h)[0] == CONFIG and h.status["primaryConfigs"] == []
    h.cluster.put(config_map({"greeting": "again"},
                             annotations={configs.TRACKING_ANNOTATION: "disabled"}))
    h.tick()
    assert h.phase == "Initialized"


def test_references_in_every_place_a_pod_reads_them() -> None:
    template = {"spec": {
        "volumes": [{"name": "a", "configMap": {"name": "cm-vol"}},
                    {"name": "b", "projected": {"sources": [
                        {"configMap": {"name": "cm-proj"}}, {"secret": {"name": "s-proj"}}]}}],
        "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "s-from"}}]}],
        "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cm-from"}}],
                        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {
                            "name": "s-key", "key": "k"}}}]}]}}
    found = configs.referenced(template)
    assert found == {("ConfigMap", "cm-vol"), ("ConfigMap", "cm-proj"), ("Secret", "s-proj"),
                     ("Secret", "s-from"), ("ConfigMap", "cm-from"), ("Secret", "s-key")}
    renamed = configs.with_primary_names(template, found)
    assert configs.referenced(renamed) == {(k, n + "-primary") for k, n in found}
    assert configs.referenced(template) == found  # the original is not changed


def test_the_copies_are_among_what_the_canary_owns() -> None:
    """Deleting a Canary with revertOnDeletion removes the primary's copies too."""
    from tests.unit.rollout_harness import canary

    from meshpilot.api.flagger import Canary
    from meshpilot.delivery import objects as gen
    from meshpilot.delivery.state import RolloutState

    owned = gen.owned_names(Canary.model_validate(canary()),
                            RolloutState(primary_configs=["ConfigMap/podinfo-config"]))
    assert ("ConfigMap", "podinfo-config-primary") in owned
